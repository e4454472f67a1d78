"""Retention: the background purge, ``chatbrush purge``, and conversations whose pictures
are gone, end to end on a real SQLite file with the fake Gemini service."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.runtime import Runtime
from bot.core.events import ChatKey
from bot.core.store import NewImage, NewPart
from bot.models.request_context import REMOVED_IMAGE
from bot.policy.retention import DAY, RetentionTask, purge
from storage.sqlite import SqliteDatabase
from tests.fakes.gemini import FakeGemini
from tests.harness import Chat, RecordingPlatform, photo, running_bot, settings_for
from tests.processes import run_chatbrush

PRIVATE = ChatKey("telegram", "42")


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
              ) -> AsyncIterator[Runtime]:
    async with running_bot(settings_for(tmp_path, fake, chatbrush_retention_days=30),
                           platform) as runtime:
        yield runtime


async def test_a_conversation_whose_pictures_are_gone_still_tells_its_story(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    v1 = await dm.say("make it watercolor", photo())
    await dm.say("add a hat")
    report = await purge(bot.store, days=30, now=time.time() + 31 * DAY)
    assert (report.threads, report.images_erased) == (1, 3)

    history = (await dm.say("/history")).text or ""
    assert "v1: make it watercolor — Ann  [picture removed]" in history
    exported = await dm.say("/export")
    assert "3 pictures were removed earlier" in (exported.text or "")
    assert exported.file is not None
    with zipfile.ZipFile(io.BytesIO(exported.file[1])) as archive:
        [manifest] = [json.loads(archive.read(n)) for n in archive.namelist()
                      if n.endswith("provenance.json")]
    assert {image.get("missing") for turn in manifest["turns"] for image in turn["images"]} == {
        "removed"}

    # a reply to a picture that is gone asks for it again, without a model call
    calls = len(fake.requests)
    refused = await dm.say("make it blue", reply_to=v1.ids[0])
    assert "no longer stored" in (refused.text or "") and len(fake.requests) == calls
    shown = await dm.say("/resend")
    assert shown.kind == "text" and "no longer stored" in (shown.text or "")

    # a new picture continues the conversation; the model gets a marker, not the old ones
    answer = await dm.say("now this one instead", photo((0, 90, 200)))
    assert answer.kind == "images"
    request = fake.requests[-1]
    assert len(request.images()) == 1 and REMOVED_IMAGE in request.texts(None)


async def test_the_background_purge_runs_logs_and_keeps_active_conversations(
    bot: Runtime, platform: RecordingPlatform, caplog: pytest.LogCaptureFixture,
) -> None:
    assert bot.retention is not None and bot.retention.days == 30  # started by the runtime
    dm = Chat(bot, platform, PRIVATE, private=True)
    idle = await dm.say("watercolor", photo())
    between = time.time()
    group = Chat(bot, platform, ChatKey("telegram", "-5"), private=False)
    active = await group.say("oil painting", photo((0, 0, 200)))
    caplog.set_level(logging.INFO, logger="bot.policy.retention")
    # thirty days after `between`: the private conversation is idle, the group's is not
    task = RetentionTask(bot.store, days=30, first_delay=0, clock=lambda: between + 30 * DAY)
    task.start()
    try:
        await task.passed.wait()
    finally:
        await task.stop()
    assert "retention: removed 2 picture(s)" in caplog.text
    assert "from 1 idle conversation(s)" in caplog.text
    assert await stored_pictures(bot, PRIVATE, idle.ids[0]) == "gone"
    assert await stored_pictures(bot, group.key, active.ids[0]) == "kept"


async def stored_pictures(bot: Runtime, chat: ChatKey, message_id: str) -> str:
    turn = await bot.store.linked_turn(chat, message_id)
    assert turn is not None
    missing = await bot.store.missing_images([ref.sha256 for ref in turn.images])
    return "gone" if missing else "kept"


# ---------------------------------------------------------------------- chatbrush purge
def old_database(path: Path, *, days_ago: float) -> None:
    """A database with one conversation whose last message is ``days_ago`` old."""
    db = SqliteDatabase(path)
    thread = db.create_thread(PRIVATE, lane="L")
    db.add_turn(thread.id, parent_id=None, role="user",
                parts=[NewPart(image=NewImage(photo(), "image/jpeg", 320, 240)),
                       NewPart(text="watercolor")])
    db.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE turns SET created_at = created_at - ?", [days_ago * DAY])
    conn.commit()
    conn.close()


def test_chatbrush_purge_says_what_it_does(tmp_path: Path) -> None:
    old_database(tmp_path / "bot.db", days_ago=40)
    env = {"CHATBRUSH_DB": str(tmp_path / "bot.db"), "CHATBRUSH_RETENTION_DAYS": "30"}
    first = run_chatbrush(["purge"], "", tmp_path, env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Removing the pictures of conversations idle for more than 30 "
                               "days (no message since ")
    assert lines[1].startswith("Done: removed 1 picture(s)") and "1 idle conversation" in lines[1]
    again = run_chatbrush(["purge", "--days", "10"], "", tmp_path, env)
    assert "nothing removed" in again.stdout


def test_chatbrush_purge_needs_a_number_and_a_free_database(tmp_path: Path) -> None:
    old_database(tmp_path / "bot.db", days_ago=40)
    env = {"CHATBRUSH_DB": str(tmp_path / "bot.db")}
    unset = run_chatbrush(["purge"], "", tmp_path, env)
    assert unset.returncode == 2 and "CHATBRUSH_RETENTION_DAYS" in unset.stderr
    held = SqliteDatabase(tmp_path / "bot.db")  # a running bot holds its SQLite file
    try:
        busy = run_chatbrush(["purge", "--days", "30"], "", tmp_path, env)
    finally:
        held.close()
    assert busy.returncode == 2 and "another chatbrush process" in busy.stderr
    assert "Traceback" not in busy.stderr
