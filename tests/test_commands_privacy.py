"""/export and /forget end to end: real intake, turn service, SQLite file and fake Gemini, with the
recording channel standing in for a platform (tests.harness)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image

from bot.app.runtime import Runtime
from bot.core.events import Attachment, AttachmentKind, ChatKey, Progress, Sender
from bot.core.threads import REMOVED_BY_AUTHOR
from tests.fakes.gemini import FakeGemini
from tests.harness import ANN, BOB, Chat, RecordingPlatform, Sent, photo, running_bot, settings_for

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")
OTHER_GROUP = ChatKey("telegram", "-1002")


def zip_members(sent: Sent) -> dict[str, bytes]:
    assert sent.kind == "file" and sent.file is not None
    with zipfile.ZipFile(io.BytesIO(sent.file[1])) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def noise_png(seed: bytes) -> bytes:
    """A picture no other test makes: random pixels, which PNG cannot compress away, so
    any slice of the stored file is a marker found nowhere else."""
    picture = Image.frombytes("RGB", (64, 64), hashlib.shake_256(seed).digest(64 * 64 * 3))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


# ---------------------------------------------------------------------- /export
async def test_export_sends_the_conversation_as_a_zip_while_showing_progress(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    v1 = await dm.say("make it watercolor", photo())
    await dm.say("add a hat")
    await dm.say("a scarf instead", reply_to=v1.ids[0])  # a branch
    dm.channel.progress_log.clear()

    sent = await dm.say("/export")

    assert sent.kind == "file" and sent.file is not None
    assert sent.file[0].startswith("chatbrush-thread-") and sent.file[0].endswith(".zip")
    assert "index.html" in (sent.text or "")
    files = zip_members(sent)
    manifest = json.loads(files["provenance.json"])
    prompts = [t["prompt"] for t in manifest["turns"] if t["role"] == "model"]
    assert prompts == ["make it watercolor", "add a hat", "a scarf instead"]
    assert manifest["thread"]["current_version"] == 3
    costs = [t["cost_usd"] for t in manifest["turns"] if t["role"] == "model"]
    assert all(isinstance(c, float) and c > 0 for c in costs)
    assert manifest["total_cost_usd"] == pytest.approx(sum(costs))
    for turn in manifest["turns"]:
        for image in turn["images"]:
            assert hashlib.sha256(files[image["file"]]).hexdigest() == image["sha256"]
    assert "a scarf instead" in files["index.html"].decode()
    assert dm.channel.progress_log == [Progress.WORKING, Progress.DONE]


async def test_export_reaches_only_the_chats_own_conversations(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    v1 = await group.say("watercolor", photo())
    other = Chat(bot, platform, OTHER_GROUP, private=False)
    # the message id of the group's picture means nothing in another chat
    refused = await other.say("/export", reply_to=v1.ids[0])
    assert refused.kind == "text" and "Reply to one of my images" in (refused.text or "")
    exported = await group.say("/export", reply_to=v1.ids[0])
    assert exported.kind == "file"


async def test_an_export_over_the_platforms_limit_is_refused_clearly(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    await dm.say("watercolor", photo())
    dm.channel.max_file_bytes = 5_000
    refused = await dm.say("/export")
    assert refused.kind == "text"
    assert "too big to export" in (refused.text or "") and "5 kB" in (refused.text or "")
    assert dm.channel.progress_log[-1] is Progress.FAILED
    assert [s for s in dm.channel.sent if s.kind == "file"] == []


# ---------------------------------------------------------------------- /forget
def database_files(settings_db: str) -> dict[str, bytes]:
    """The database, its WAL and shared-memory files, and the picture files beside it."""
    folder = Path(settings_db).parent
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and str(p.relative_to(folder)).startswith(Path(settings_db).name)}


def where_found(settings_db: str, *markers: bytes) -> list[str]:
    return [f"{name} has {marker[:12]!r}"
            for name, data in database_files(settings_db).items()
            for marker in markers if marker in data]


async def stored_upload(bot: Runtime, chat: ChatKey, message_id: str) -> bytes:
    """The picture a user's message left in the store, as stored."""
    turn = await bot.store.linked_turn(chat, message_id)
    assert turn is not None and turn.images
    return await bot.store.image_bytes(turn.images[0].sha256)


async def test_forget_asks_first_then_erases_the_users_pictures_from_the_files(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    db = bot.turns.settings.chatbrush_db
    # the fake model would repeat the prompt in its answer, and the bot's answers stay
    fake.reply_text = "Here you go."
    group = Chat(bot, platform, GROUP, private=False)
    upload = noise_png(b"ann's private photo")
    prompt = "paint my cat " + os.urandom(6).hex()
    v1 = await group.say(prompt, upload)  # message 1
    await group.say("add this hat", noise_png(b"bob's photo"), sender=BOB,
                    reply_to=v1.ids[0])  # message 2
    # what survives normalisation is what is stored: a slice of it is the marker; the
    # inbox held the upload itself (inline, as the console sends it) in base64
    stored = await stored_upload(bot, GROUP, "1")
    marker = stored[len(stored) // 2 : len(stored) // 2 + 48]
    inline = base64.b64encode(upload)[200:264]
    bob_marker = (await stored_upload(bot, GROUP, "2"))[3000:3048]
    assert where_found(db, marker) and where_found(db, inline)
    assert where_found(db, prompt.encode())

    asked = await group.say("/forget")
    assert "1 message and 1 picture" in (asked.text or "")
    assert "/forget confirm" in (asked.text or "")
    assert where_found(db, marker)  # nothing happened yet

    done = await group.say("/forget confirm")
    assert "Done" in (done.text or "") and "1 picture" in (done.text or "")
    assert where_found(db, marker, inline, prompt.encode()) == []
    assert where_found(db, bob_marker) != []  # Bob's picture is his

    # the thread is still navigable: its history reads the placeholder, replies continue
    history = (await group.say("/history", reply_to=v1.ids[0])).text or ""
    assert "v1: [removed at the author's request]" in history
    assert "v2 (from v1): add this hat — Bob" in history
    again = await group.say("now make it blue", reply_to=v1.ids[0])
    assert again.kind == "images"
    assert prompt not in fake.requests[-1].texts()
    assert REMOVED_BY_AUTHOR in fake.requests[-1].texts()


async def query(bot: Runtime, statement: str) -> list[tuple[Any, ...]]:
    """One SQL statement on the bot's database, behind the store's back."""
    url = bot.turns.settings.database_url
    if url is None:
        with sqlite3.connect(bot.turns.settings.chatbrush_db) as db:
            return [tuple(row) for row in db.execute(statement).fetchall()]
    async with await psycopg.AsyncConnection.connect(url.get_secret_value(),
                                                     autocommit=True) as conn:
        cursor = await conn.execute(statement)  # type: ignore[arg-type]
        return [tuple(row) for row in await cursor.fetchall()] if cursor.description else []


async def raw_database_files(bot: Runtime, backend: str) -> dict[str, bytes]:
    """Every file the database keeps its data in, as the disk holds it: SQLite's file and
    WAL (and the picture files beside them); PostgreSQL's files of this database, after a
    checkpoint wrote every page out."""
    if backend == "sqlite":
        return database_files(bot.turns.settings.chatbrush_db)
    await query(bot, "CHECKPOINT")
    [(data_dir,)] = await query(bot, "SHOW data_directory")
    [(oid,)] = await query(bot, "SELECT oid FROM pg_database WHERE datname = current_database()")
    folder = Path(data_dir) / "base" / str(oid)
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


async def test_forget_leaves_no_name_and_no_file_id_in_any_database_file(
    store_backend: str, bot: Runtime, platform: RecordingPlatform
) -> None:
    tag = os.urandom(4).hex()
    zelda = Sender("71", f"Zelda Quixote {tag}", f"zquixote{tag}")
    file_id = f"AgACAgQAAxkBAAI-zelda-{tag}"
    picture = Attachment(AttachmentKind.IMAGE, ref=file_id, mime_type="image/png",
                         data=noise_png(tag.encode()))
    group = Chat(bot, platform, GROUP, private=False)
    v1 = await group.say("make it watercolor", sender=zelda, attachments=(picture,))
    # Bob answers her photo: his message names her picture by its file_id
    await group.say("a hat for this one", sender=BOB, reply_to=v1.ids[0],
                    reply_attachments=(picture,))
    markers = [zelda.display_name.encode(), zelda.username.encode(), file_id.encode()]
    found = await raw_database_files(bot, store_backend)
    assert all(any(m in data for data in found.values()) for m in markers)

    await group.say("/forget", sender=zelda)
    done = await group.say("/forget confirm", sender=zelda)
    assert "Done" in (done.text or "")

    files = await raw_database_files(bot, store_backend)
    assert [f"{name} has {m!r}" for name, data in files.items() for m in markers
            if m in data] == []
    # Bob's message is his: it keeps its words
    rows = await query(bot, "SELECT event FROM inbox WHERE message_id = '2'")
    assert "a hat for this one" in rows[0][0]


async def test_forget_in_a_group_stays_there_and_in_a_private_chat_goes_everywhere(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    other = Chat(bot, platform, OTHER_GROUP, private=False)
    dm = Chat(bot, platform, PRIVATE, private=True)
    await group.say("watercolor", photo())
    await other.say("oil paint", photo())
    await dm.say("pencil", photo())
    await group.say("/forget confirm")
    assert "in this chat" in ((await other.say("/forget")).text or "")
    asked = await dm.say("/forget")
    assert "in every chat with me" in (asked.text or "")
    assert "2 messages and 2 pictures" in (asked.text or "")
    await dm.say("/forget confirm")
    assert "nothing you sent" in ((await dm.say("/forget")).text or "")


async def test_forget_explains_its_word_and_an_empty_record(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    assert "nothing you sent" in ((await dm.say("/forget")).text or "")
    wrong = await dm.say("/forget everything")
    assert "/forget confirm" in (wrong.text or "")


async def test_a_resumed_or_repeated_forget_is_harmless(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake)
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        await dm.say("watercolor", photo())
        await dm.say("/forget confirm")
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        dm.next_id = 10
        reply: Any = await dm.say("/forget confirm")
        assert "nothing you sent" in reply.text


async def test_the_placeholder_is_shown_in_the_readers_language(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    dm.channel.admins.add(ANN.id)
    await dm.say("watercolor", photo())
    await dm.say("/forget confirm")
    await dm.say("/settings language zh")
    assert "v1: [应作者要求已删除]" in ((await dm.say("/history")).text or "")
