"""End to end: the real PTB ``Application`` against the fake Bot API, the real engine and
SQLite store, and the fake Gemini service answering the model calls.

Each test posts updates in Telegram's wire shape and checks what a user would see: which
messages the bot sent, where (chat, topic, reply), and what the model was asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
import sqlite3
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from telegram import Message

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.platform import create
from adapters.telegram.translate import BotIdentity, to_incoming
from bot.app.runtime import open_runtime
from bot.core.config import Settings, SettingsError
from bot.core.events import ChatKey, Incoming, Sender
from bot.core.messages import QUEUED_NOTICE, SUPPORTED_FORMATS
from bot.flow.intake import NOT_ALLOWED
from bot.kit.image_types import OutputImage
from bot.policy.input_limits import UNSUPPORTED
from tests.fakes.gemini import FakeGemini, make_png
from tests.fakes.telegram_api import GROUP_ANONYMOUS_BOT, TOKEN, FakeTelegram, photos_in
from tests.harness import FLOOD_DEFAULTS_LIFTED, ingredients_of, manifest_of, software_agents

BOT = "@ChatbrushTestBot"
GROUP_ID = -1001234567890

pytestmark = pytest.mark.timeout(60)
#: an empty value is the setting's default (what an operator who set nothing gets)
PRODUCTION_FLOOD_DEFAULTS = dict.fromkeys(FLOOD_DEFAULTS_LIFTED, "")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


def make_settings(tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_base_url": tg.base_url,
        "gemini_api_key": gemini.api_key,
        "gemini_base_url": gemini.base_url,
        "gemini_max_attempts": 1,
        "chatbrush_db": str(tmp_path / "chatbrush.db"),
        "telegram_album_debounce": 0.3,
        **FLOOD_DEFAULTS_LIFTED,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def settings(tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path) -> Settings:
    return make_settings(tg, gemini, tmp_path)


@contextlib.asynccontextmanager
async def running(
    tg: FakeTelegram, settings: Settings, **options: Any
) -> AsyncIterator[TelegramAdapter]:
    """The bot as ``chatbrush run`` runs it, until the block ends (then an orderly stop:
    no new updates, running turns finish, connections close)."""
    options.setdefault("chat_action_interval", 0.1)
    options.setdefault("poll_timeout", 1)
    async with open_runtime(settings) as runtime:
        adapter = TelegramAdapter(settings, runtime.intake, **options)
        runtime.intake.register(adapter)
        polls = len(tg.calls_of("getUpdates"))
        await adapter.start(webhook=False)
        try:
            await runtime.intake.start()
            await tg.wait_for(lambda: len(tg.calls_of("getUpdates")) > polls, what="polling")
            yield adapter
        finally:
            await adapter.stop_receiving()
            await runtime.intake.stop(grace=settings.chatbrush_shutdown_grace)
            await adapter.close()


@pytest.fixture
async def bot(tg: FakeTelegram, settings: Settings) -> AsyncIterator[TelegramAdapter]:
    async with running(tg, settings) as adapter:
        yield adapter


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def big_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


async def answers_to(tg: FakeTelegram, message: dict[str, Any], count: int = 1) -> list[Any]:
    """The bot's first ``count`` messages sent as replies to ``message``."""

    def found() -> list[dict[str, Any]] | None:
        hits = [
            m
            for m in tg.sent_to(message["chat"]["id"])
            if m.get("reply_to_message", {}).get("message_id") == message["message_id"]
        ]
        return hits[:count] if len(hits) >= count else None

    result: list[Any] = await tg.wait_for(found, what=f"answer to {message.get('text')!r}")
    return result


def people(tg: FakeTelegram) -> tuple[dict[str, Any], ...]:
    return (
        tg.user(1001, "Alice", "alice"),
        tg.user(1002, "Bob", "bob"),
        tg.user(1003, "Carol", "carol"),
    )


# ---------------------------------------------------------------------- private chats
async def test_private_edit(tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    asked = tg.send(chat, alice, photo=make_png(320, 200, seed=1), caption="make it red")

    [answer] = await answers_to(tg, asked)

    assert "photo" in answer
    assert answer["caption"].startswith("v1")
    [request] = gemini.requests
    assert request.prompt == "make it red"
    assert [size_of(img) for img in request.images("user")] == [(320, 200)]
    actions = tg.calls_of("sendChatAction")
    assert actions and actions[0].params["action"] == "upload_photo"
    assert "message_thread_id" not in actions[0].params
    # registered with Telegram at start-up, so clients offer the commands
    assert {c["command"] for c in tg.commands} >= {"help", "new", "undo", "reset"}
    assert tg.calls_of("deleteWebhook")


async def test_private_conversation_keeps_going_without_replies(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    first = tg.send(chat, alice, photo=make_png(300, 300, seed=2), caption="make it blue")
    await answers_to(tg, first)
    second = tg.send(chat, alice, "now add a hat")
    [answer] = await answers_to(tg, second)

    assert answer["caption"].startswith("v2")
    assert [c["role"] for c in gemini.requests[1].contents] == ["user", "model", "user"]


async def test_start_and_help_explain_usage(tg: FakeTelegram, bot: TelegramAdapter) -> None:
    alice, *_ = people(tg)
    asked = tg.send(tg.private_chat(alice), alice, "/start")
    [answer] = await answers_to(tg, asked)
    assert "/undo" in answer["text"] and "photo" in answer["text"].lower()


async def test_document_image(tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter) -> None:
    alice, *_ = people(tg)
    doc = tg.document(make_png(240, 180, seed=3), "image/png", "scan.png")
    asked = tg.send(tg.private_chat(alice), alice, document=doc, caption="sharpen it")

    [answer] = await answers_to(tg, asked)

    assert "photo" in answer
    assert [size_of(img) for img in gemini.requests[0].images("user")] == [(240, 180)]


async def test_oversized_file_and_pdf_are_refused_clearly(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    huge = tg.document(None, "image/png", "poster.png", size=25_000_000)
    pdf = tg.document(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf", "brief.pdf")
    asked_huge = tg.send(chat, alice, document=huge, caption="make it pop")
    asked_pdf = tg.send(chat, alice, document=pdf, caption="make it pop")

    [too_big] = await answers_to(tg, asked_huge)
    [not_image] = await answers_to(tg, asked_pdf)

    assert "too large (25.0 MB)" in too_big["text"] and "20.0 MB" in too_big["text"]
    assert "PDF" in not_image["text"] and "isn't an image" in not_image["text"]
    assert not tg.calls_of("getFile") and not tg.calls_of("download")
    assert gemini.requests == []


async def test_model_refusal_is_shown_clearly(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    gemini.enqueue_block("PROHIBITED_CONTENT")
    asked = tg.send(
        tg.private_chat(alice), alice, photo=make_png(128, 128, seed=4), caption="do it"
    )

    [answer] = await answers_to(tg, asked)

    assert "photo" not in answer
    assert "prohibited" in answer["text"].lower()
    assert "Traceback" not in answer["text"]


async def test_stickers_and_edits_get_no_model_call(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, settings):
        asked = tg.send(chat, alice, photo=make_png(64, 64, seed=5), caption="invert it")
        await answers_to(tg, asked)
        tg.edit(asked, "actually make it green")
        sticker = tg.send(
            chat,
            alice,
            extra={
                "sticker": {
                    "file_id": "s1",
                    "file_unique_id": "su1",
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                }
            },
        )
        [hint] = await answers_to(tg, sticker)
        await tg.wait_polled_past(sticker)
    assert hint["text"] == UNSUPPORTED.format(formats=SUPPORTED_FORMATS)
    assert len(gemini.requests) == 1
    assert tg.allowed_updates == ["message"]  # edits are not even delivered


# ---------------------------------------------------------------------- groups
async def test_group_photo_with_caption_mention(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    group = tg.group(GROUP_ID)
    asked = tg.send(group, alice, photo=make_png(200, 100, seed=6), caption=f"{BOT} watercolor")

    [answer] = await answers_to(tg, asked)

    assert "photo" in answer and "message_thread_id" not in answer
    assert gemini.requests[0].prompt == "watercolor"  # the mention is not part of the prompt


async def test_group_chatter_is_ignored(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings
) -> None:
    alice, bob, carol = people(tg)
    group = tg.group(GROUP_ID)
    async with running(tg, settings):
        photo = tg.send(group, carol, photo=make_png(90, 90, seed=7))
        tg.send(group, bob, "nice one")
        tg.send(group, alice, "agreed", reply_to=photo)
        tg.send(group, alice, "/help@SomeOtherBot")
        tg.send(group, bob, "@ChatbrushTestBotFan is not the bot")
        asked = tg.send(group, alice, f"{BOT} draw a lighthouse")
        [answer] = await answers_to(tg, asked)
        await tg.wait_polled_past(asked)
    # the bot has stopped cleanly, so every fetched update has been fully handled
    assert len(gemini.requests) == 1 and gemini.requests[0].prompt == "draw a lighthouse"
    assert tg.sent == [answer]
    assert tg.download_count(photo["photo"][-1]["file_id"]) == 0


async def test_two_people_in_one_group_are_served_at_the_same_time(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    group = tg.group(GROUP_ID)
    gemini.pause()
    first = tg.send(group, alice, photo=make_png(120, 100, seed=40), caption=f"{BOT} red")
    second = tg.send(group, bob, photo=make_png(130, 100, seed=41), caption=f"{BOT} blue")
    await gemini.wait_for_requests(2)  # both model calls are under way together
    gemini.resume()
    await answers_to(tg, first)
    await answers_to(tg, second)
    assert not [m for m in tg.sent if m.get("text") == QUEUED_NOTICE]


async def test_reply_to_the_bot_continues_and_older_version_branches(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    group = tg.group(GROUP_ID)
    first = tg.send(group, alice, photo=make_png(160, 120, seed=8), caption=f"{BOT} sepia")
    [v1] = await answers_to(tg, first)

    # a reply in a non-forum supergroup carries the reply chain's message_thread_id;
    # echoing it back would be refused by Telegram ("message thread not found")
    second = tg.send(group, bob, "now add a hat", reply_to=v1)
    assert "message_thread_id" in second
    [v2] = await answers_to(tg, second)
    assert v2["caption"].startswith("v2")
    continued = gemini.requests[1]
    assert [c["role"] for c in continued.contents] == ["user", "model", "user"]

    third = tg.send(group, alice, "no, add a scarf instead", reply_to=v1)
    [branch] = await answers_to(tg, third)
    branched = gemini.requests[2]
    assert [c["role"] for c in branched.contents] == ["user", "model", "user"]
    assert "now add a hat" not in " ".join(branched.texts("user"))
    assert branch["caption"].startswith("v")


async def test_reply_with_mention_to_someone_elses_photo(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    _, bob, carol = people(tg)
    group = tg.group(GROUP_ID)
    carols = tg.send(group, carol, photo=make_png(330, 220, seed=9))
    asked = tg.send(group, bob, f"{BOT} make this black and white", reply_to=carols)

    [answer] = await answers_to(tg, asked)

    assert "photo" in answer
    request = gemini.requests[0]
    assert [size_of(img) for img in request.images("user")] == [(330, 220)]
    assert request.prompt == "make this black and white"


async def test_reply_with_mention_to_a_file_that_is_no_image(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    _, bob, carol = people(tg)
    group = tg.group(GROUP_ID)
    pdf = tg.document(b"%PDF-1.7\n", "application/pdf", "menu.pdf")
    carols = tg.send(group, carol, document=pdf)
    asked = tg.send(group, bob, f"{BOT} make this pretty", reply_to=carols)

    [answer] = await answers_to(tg, asked)

    assert "PDF" in answer["text"] and "isn't an image" in answer["text"]
    assert gemini.requests == []


async def test_album_of_three_photos_is_one_turn(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    group = tg.group(GROUP_ID)
    album = "13900000000000001"
    tg.send(group, alice, photo=make_png(101, 100, seed=10), media_group_id=album)
    captioned = tg.send(
        group,
        alice,
        photo=make_png(102, 100, seed=11),
        media_group_id=album,
        caption=f"{BOT} put the hat from the second on the first",
    )
    tg.send(group, alice, photo=make_png(103, 100, seed=12), media_group_id=album)

    [answer] = await answers_to(tg, captioned)

    assert "photo" in answer
    [request] = gemini.requests
    assert [size_of(img) for img in request.images("user")] == [(101, 100), (102, 100), (103, 100)]
    assert request.prompt == "put the hat from the second on the first"


async def test_each_on_an_album_answers_with_one_album_of_three_edits(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    group = tg.group(GROUP_ID)
    album = "13900000000000004"
    sizes = [(101, 100), (102, 100), (103, 100)]
    captioned = tg.send(group, alice, photo=make_png(*sizes[0], seed=20), media_group_id=album,
                        caption="/each make the background white")
    tg.send(group, alice, photo=make_png(*sizes[1], seed=21), media_group_id=album)
    tg.send(group, alice, photo=make_png(*sizes[2], seed=22), media_group_id=album)

    results = await answers_to(tg, captioned, 3)

    assert len(tg.calls_of("sendMediaGroup")) == 1  # one album back
    assert len({m["media_group_id"] for m in results}) == 1
    assert [size_of_photo(tg, m) for m in results] == sizes  # in the pictures' order
    assert "v1" in results[0]["caption"]
    assert len(gemini.requests) == 3
    assert sorted(size_of(r.images("user")[0]) for r in gemini.requests) == sizes
    assert all(len(r.images()) == 1 for r in gemini.requests)

    # a reply to the second result continues that one alone
    asked = tg.send(group, bob, "now add a hat", reply_to=results[1])
    [answer] = await answers_to(tg, asked)
    assert answer["caption"].startswith("v4")
    request = gemini.requests[-1]
    assert [size_of(i) for i in request.images("user")] == [sizes[1]]
    assert [size_of(i) for i in request.images("model")] == [sizes[1]]


async def test_instruction_typed_right_after_an_album_comes_after_it(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    album = "13900000000000002"
    first = tg.send(chat, alice, photo=make_png(111, 100, seed=30), media_group_id=album)
    tg.send(chat, alice, photo=make_png(112, 100, seed=31), media_group_id=album)
    asked = tg.send(chat, alice, "combine them side by side")

    [got_it] = await answers_to(tg, first)
    answer = await tg.wait_for(
        lambda: [m for m in tg.sent if "photo" in m] or None, what="the combined picture"
    )

    assert "What should I do with them" in got_it["text"]
    assert answer[0]["reply_to_message"]["message_id"] == asked["message_id"]
    [request] = gemini.requests
    assert [size_of(img) for img in request.images("user")] == [(111, 100), (112, 100)]
    assert request.prompt == "combine them side by side"


async def test_a_reply_to_any_picture_of_an_album_finds_the_whole_album(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    album = "13900000000000003"
    first = tg.send(chat, alice, photo=make_png(121, 100, seed=32), media_group_id=album)
    tg.send(chat, alice, photo=make_png(122, 100, seed=33), media_group_id=album)
    third = tg.send(chat, alice, photo=make_png(123, 100, seed=34), media_group_id=album)
    await answers_to(tg, first)  # "What should I do with them?"

    asked = tg.send(chat, alice, "put them side by side", reply_to=third)
    await answers_to(tg, asked)

    [request] = gemini.requests
    assert [size_of(img) for img in request.images("user")] == [(121, 100), (122, 100),
                                                                  (123, 100)]


async def test_forum_topics_are_separate(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    forum = tg.group(GROUP_ID, "Studio", forum=True)
    topic_a = tg.create_topic(forum, alice, "Logos")
    topic_b = tg.create_topic(forum, bob, "Posters")
    in_a = tg.send(
        forum, alice, photo=make_png(140, 100, seed=13), caption=f"{BOT} red", topic=topic_a
    )
    [answer_a] = await answers_to(tg, in_a)
    in_b = tg.send(
        forum, bob, photo=make_png(150, 100, seed=14), caption=f"{BOT} blue", topic=topic_b
    )
    [answer_b] = await answers_to(tg, in_b)

    assert answer_a["message_thread_id"] == topic_a
    assert answer_b["message_thread_id"] == topic_b
    topics = {c.params.get("message_thread_id") for c in tg.calls_of("sendChatAction")}
    assert topics == {str(topic_a), str(topic_b)}

    follow = tg.send(forum, alice, "and brighter", topic=topic_a, reply_to=answer_a)
    [again] = await answers_to(tg, follow)
    assert again["message_thread_id"] == topic_a
    request = gemini.requests[2]
    assert [size_of(img) for img in request.images("user")] == [(140, 100)]
    assert "blue" not in " ".join(request.texts("user"))


async def test_reset_is_for_admins(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    group = tg.group(GROUP_ID)
    tg.set_member(group, alice, "administrator")
    asked = tg.send(group, bob, photo=make_png(100, 100, seed=15), caption=f"{BOT} sepia")
    [image] = await answers_to(tg, asked)

    refused_cmd = tg.send(group, bob, "/reset", reply_to=image)
    [refused] = await answers_to(tg, refused_cmd)
    assert "only chat admins" in refused["text"]

    accepted_cmd = tg.send(group, alice, "/reset@ChatbrushTestBot", reply_to=image)
    [accepted] = await answers_to(tg, accepted_cmd)
    assert "forgot" in accepted["text"]
    checked = {(c.params["chat_id"], c.params["user_id"]) for c in tg.calls_of("getChatMember")}
    assert checked == {(str(GROUP_ID), "1002"), (str(GROUP_ID), "1001")}


async def test_anonymous_admin_counts_as_admin(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    group = tg.group(GROUP_ID)
    asked = tg.send(group, alice, photo=make_png(100, 100, seed=16), caption=f"{BOT} sepia")
    [image] = await answers_to(tg, asked)
    reset = tg.send(group, GROUP_ANONYMOUS_BOT, "/reset", reply_to=image, sender_chat=group)
    [answer] = await answers_to(tg, reset)
    assert "forgot" in answer["text"]
    assert not tg.calls_of("getChatMember")


async def test_access_control_answers_one_polite_line(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    alice, bob, _ = people(tg)
    settings = make_settings(
        tg, gemini, tmp_path, telegram_allowed_chats="-100777", telegram_allowed_users="1001"
    )
    async with running(tg, settings):
        refused = tg.send(tg.private_chat(bob), bob, photo=make_png(64, 64), caption="hi")
        [answer] = await answers_to(tg, refused)
        allowed = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 64), caption="hi")
        await answers_to(tg, allowed)
        await tg.wait_polled_past(allowed)
    assert answer["text"] == NOT_ALLOWED
    assert len(gemini.requests) == 1
    assert len(tg.sent_to(bob["id"])) == 1


# ---------------------------------------------------------------------- output shapes
async def test_long_text_goes_under_the_photo_or_after_it(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    story = "Here is what I changed. " * 60  # ~1,400 characters: too long for a caption
    gemini.enqueue_answer([gemini.text_part(story, signature=True), gemini.image_part()])
    asked = tg.send(chat, alice, photo=make_png(64, 64, seed=17), caption="tell me everything")

    photo, text = await answers_to(tg, asked, 2)

    assert "photo" in photo and "caption" not in photo
    assert story.strip() in text["text"]


async def test_several_images_as_one_media_group(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    gemini.enqueue_answer(
        [gemini.text_part("Two takes", signature=True), gemini.image_part(), gemini.image_part()]
    )
    asked = tg.send(tg.private_chat(alice), alice, "two variations of a cat")

    first, second = await answers_to(tg, asked, 2)

    assert first["media_group_id"] == second["media_group_id"]
    assert "Two takes" in first["caption"]
    assert len(tg.calls_of("sendMediaGroup")) == 1


async def test_image_too_large_for_a_photo_goes_as_a_document(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    gemini.enqueue_answer([gemini.image_part(big_png(6000, 4200))])
    asked = tg.send(tg.private_chat(alice), alice, "a very wide banner")

    [answer] = await answers_to(tg, asked)

    assert "document" in answer and "photo" not in answer
    assert answer["document"]["file_name"] == "chatbrush.png"
    assert not tg.calls_of("sendPhoto")  # checked before sending, not after a refusal


async def test_sent_pictures_are_numbered_in_their_order_even_when_one_is_a_document(
    tg: FakeTelegram, bot: TelegramAdapter
) -> None:
    """Whoever sends several answers at once links id i to picture i: a picture too big
    for a photo goes out after the album, but its id keeps its place."""
    alice, *_ = people(tg)
    asked = tg.send(tg.private_chat(alice), alice, "three", push=False)
    me = BotIdentity(tg.bot_id, tg.bot_username)
    incoming = to_incoming(Message.de_json(asked, bot.bot), me)
    assert incoming is not None
    pictures = [OutputImage(big_png(6000, 4200)), OutputImage(make_png(70, 60, seed=1)),
                OutputImage(make_png(80, 60, seed=2))]

    ids = await bot.channel(incoming).send_images(pictures, "v1, v2, v3")

    sent = {str(m["message_id"]): m for m in tg.sent}
    assert "document" in sent[ids[0]]
    assert [size_of_photo(tg, sent[i]) for i in ids[1:]] == [(70, 60), (80, 60)]
    assert len(tg.calls_of("sendMediaGroup")) == 1


def size_of_photo(tg: FakeTelegram, message: dict[str, Any]) -> tuple[int, int]:
    largest = message["photo"][-1]
    return largest["width"], largest["height"]
async def test_a_picture_sent_as_a_document_keeps_its_content_credentials(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    gemini.enqueue_answer([gemini.image_part(big_png(6000, 4200))])
    asked = tg.send(tg.private_chat(alice), alice, photo=make_png(320, 200, seed=4),
                    caption="make it a banner")

    [answer] = await answers_to(tg, asked)

    document = tg.file_data(answer["document"]["file_id"])
    manifest = manifest_of(document)
    assert manifest["validation_state"] == "Valid"
    [sent_input] = gemini.requests[-1].images("user")
    assert ingredients_of(manifest) == [("parentOf", hashlib.sha256(sent_input).hexdigest())]
    assert software_agents(manifest) == ["gemini-2.5-flash-image"]


async def test_originals_go_as_documents_byte_for_byte(
    tg: FakeTelegram, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    asked = tg.send(tg.private_chat(alice), alice, "a small red square")
    await answers_to(tg, asked)
    channel = bot.channel(Incoming(chat=ChatKey("telegram", str(asked["chat"]["id"])),
                                   message_id=str(asked["message_id"]),
                                   sender=Sender(str(alice["id"])), is_private=True))
    signed = big_png(64, 48)
    ids = await channel.send_images([OutputImage(signed, "image/png", 64, 48)], "v1",
                                    as_files=True)
    [sent] = [m for m in tg.sent if str(m["message_id"]) in ids]
    assert "document" in sent and "photo" not in sent
    assert tg.file_data(sent["document"]["file_id"]) == signed


async def test_export_arrives_as_a_zip_document(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    asked = tg.send(chat, alice, photo=make_png(320, 200, seed=5), caption="make it red")
    await answers_to(tg, asked)
    command = tg.send(chat, alice, "/export")

    [answer] = await answers_to(tg, command)

    assert answer["document"]["file_name"].endswith(".zip")
    assert "index.html" in answer["caption"]
    with zipfile.ZipFile(io.BytesIO(tg.file_data(answer["document"]["file_id"]))) as archive:
        assert any(name.endswith("/provenance.json") for name in archive.namelist())


# ---------------------------------------------------------------------- progress
async def test_progress_action_repeats_and_a_queue_is_announced_once(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    gemini.pause()
    first = tg.send(chat, alice, photo=make_png(64, 64, seed=18), caption="make it red")
    await gemini.wait_for_requests(1)
    await tg.wait_calls("sendChatAction", 3)  # re-sent while the model works
    second = tg.send(chat, alice, "and add a moon")
    third = tg.send(chat, alice, "and stars")
    notices = await tg.wait_for(
        lambda: [m for m in tg.sent if m.get("text") == QUEUED_NOTICE] or None, what="notice"
    )
    gemini.resume()
    await answers_to(tg, third)
    await answers_to(tg, first)
    await answers_to(tg, second, 2)
    # one notice, to the message right behind the running one; the third is not told again
    queued = [m for m in tg.sent if m.get("text") == QUEUED_NOTICE]
    assert [m["reply_to_message"]["message_id"] for m in queued] == [second["message_id"]]
    assert len(notices) == 1
    assert len(gemini.requests) == 3


# ---------------------------------------------------------------------- robustness
async def test_flood_limit_429_is_survived(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    tg.fail_next("sendPhoto", retry_after=1)
    asked = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 64), caption="blur it")

    [answer] = await answers_to(tg, asked)

    assert "photo" in answer
    assert len(tg.calls_of("sendPhoto")) == 2
    assert len(photos_in(tg.sent)) == 1


async def test_same_update_twice_is_handled_once(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, settings):
        first = tg.send(chat, alice, photo=make_png(64, 64, seed=19), caption="rotate it")
        await answers_to(tg, first)
        tg.redeliver(tg.delivered_update(first))  # as if our ack never reached Telegram
        later = tg.send(chat, alice, "now mirror it")
        await answers_to(tg, later)
        await tg.wait_polled_past(later)
    assert len(gemini.requests) == 2
    assert len(photos_in(tg.sent)) == 2


async def test_restart_mid_conversation_continues_the_thread(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, settings):
        asked = tg.send(chat, alice, photo=make_png(200, 120, seed=20), caption="make it red")
        [v1] = await answers_to(tg, asked)

    async with running(tg, settings):  # a new process: new engine, same database
        follow = tg.send(chat, alice, "now add a hat", reply_to=v1)
        [v2] = await answers_to(tg, follow)
        more = tg.send(chat, alice, "and a scarf")
        [v3] = await answers_to(tg, more)

    assert v2["caption"].startswith("v2") and v3["caption"].startswith("v3")
    assert [c["role"] for c in gemini.requests[1].contents] == ["user", "model", "user"]
    assert len(gemini.requests[2].contents) == 5
    # the model turn is replayed with its signature (Gemini 3 needs it verbatim)
    model_parts = [p for p in gemini.requests[1].parts("model") if "inlineData" in p]
    assert model_parts and model_parts[0]["thoughtSignature"] in gemini.issued_signatures


async def test_update_left_unacknowledged_by_a_crash_is_not_answered_again(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, settings):
        asked = tg.send(chat, alice, photo=make_png(64, 64, seed=21), caption="invert it")
        await answers_to(tg, asked)
    tg.redeliver(tg.delivered_update(asked))  # Telegram never saw the ack
    async with running(tg, settings):
        later = tg.send(chat, alice, "now blur it")
        await answers_to(tg, later)
        await tg.wait_polled_past(later)
    assert len(gemini.requests) == 2
    assert len(photos_in(tg.sent)) == 2


async def test_a_failing_download_does_not_stop_the_bot(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, bob, _ = people(tg)
    tg.fail_next("getFile", code=500)
    failing_download = tg.send(tg.private_chat(bob), bob, photo=make_png(64, 64), caption="blur")
    [problem] = await answers_to(tg, failing_download)
    assert "couldn't download" in problem["text"]

    ok = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 64), caption="blur")
    [answer] = await answers_to(tg, ok)
    assert "photo" in answer


async def test_a_picture_telegram_refuses_to_take_is_resent_without_a_new_model_call(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, make_settings(tg, gemini, tmp_path, chatbrush_delivery_backoff=0.01)):
        for _ in range(3):  # every delivery attempt meets a server error
            tg.fail_next("sendPhoto", code=502, description="Bad Gateway")
        asked = tg.send(chat, alice, photo=make_png(64, 64, seed=3), caption="blur it")
        [notice] = await answers_to(tg, asked)
        assert "ready, but I couldn't send it" in notice["text"]
        history = tg.send(chat, alice, "/history")
        [listing] = await answers_to(tg, history)
        assert "No versions yet" in listing["text"]  # the unseen picture is not current
        more = tg.send(chat, alice, "now mirror it")
        v1, v2 = await answers_to(tg, more, 2)
    assert v1["caption"].startswith("v1") and v2["caption"].startswith("v2")
    assert len(gemini.requests) == 2  # v1 came from storage, not from a second call
    assert gemini.requests[1].images("model"), "v2 continued from the delivered v1"


# ---------------------------------------------------------------------- wiring
async def test_create_needs_a_token(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    without = make_settings(tg, gemini, tmp_path, telegram_bot_token=None)
    with_token = make_settings(tg, gemini, tmp_path)
    async with open_runtime(without) as runtime:
        assert create(without, runtime.intake) is None
        adapter = create(with_token, runtime.intake)
        assert isinstance(adapter, TelegramAdapter)
        assert adapter.mount(None) is False  # type: ignore[arg-type]


async def test_a_rejected_token_is_one_clear_line(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    wrong = "987654321:AAWrongTokenWrongTokenWrongToken_xyz"
    settings = make_settings(tg, gemini, tmp_path, telegram_bot_token=wrong)
    async with open_runtime(settings) as runtime:
        adapter = TelegramAdapter(settings, runtime.intake)
        with pytest.raises(SettingsError) as caught:
            await adapter.start(webhook=False)
    assert "TELEGRAM_BOT_TOKEN" in str(caught.value)
    assert "WrongToken" not in str(caught.value)


async def test_an_unreachable_bot_api_server_is_one_clear_line(
    gemini: FakeGemini, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with FakeTelegram() as tg:
        settings = make_settings(tg, gemini, tmp_path, telegram_base_url=f"http://127.0.0.1:{port}")
    async with open_runtime(settings) as runtime:
        adapter = TelegramAdapter(settings, runtime.intake)
        with pytest.raises(SettingsError) as caught:
            await adapter.start(webhook=False)
    assert "TELEGRAM_BASE_URL" in str(caught.value)
    assert TOKEN.split(":", 1)[1] not in str(caught.value)


async def test_token_never_reaches_the_logs(
    tg: FakeTelegram, gemini: FakeGemini, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, *_ = people(tg)
    async with running(tg, settings):
        asked = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 64), caption="blur")
        await answers_to(tg, asked)
    assert "getFile" in caplog.text and "download" not in TOKEN
    secret = TOKEN.split(":", 1)[1]
    assert secret not in caplog.text


async def test_a_video_without_a_caption_is_answered(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    video = {"file_id": "BAACAgIAAxkBAAIBvideo", "file_unique_id": "AgADvid", "width": 640,
             "height": 360, "duration": 4, "mime_type": "video/mp4", "file_size": 120_000}
    asked = tg.send(tg.private_chat(alice), alice, extra={"video": video})
    [answer] = await answers_to(tg, asked)
    assert "can't edit videos" in answer["text"]
    assert gemini.requests == [] and not tg.calls_of("getFile")


async def test_a_document_without_type_or_name_is_judged_by_its_bytes(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    anonymous = tg.add_file(make_png(64, 48), kind="documents", ext="bin")
    asked = tg.send(chat, alice, document=anonymous, caption="make it red")
    [answer] = await answers_to(tg, asked)
    assert "photo" in answer  # a picture after all: edited, not "(this kind of)" refused
    nonsense = tg.add_file(b"just some notes", kind="documents", ext="bin")
    refused = tg.send(chat, alice, document=nonsense, caption="make it red")
    [reply] = await answers_to(tg, refused)
    assert "not an image" in reply["text"] and "text file" in reply["text"]


# ---------------------------------------------------------------------- languages
async def test_a_chinese_app_is_answered_in_chinese(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    li = tg.user(1010, "Li", "li", language_code="zh-hans")
    chat = tg.private_chat(li)
    [help_text] = await answers_to(tg, tg.send(chat, li, "/start"))
    assert "我用 Google 的 Gemini 图像模型来编辑图片" in help_text["text"]
    assert "回复我发的图片可以继续编辑" in help_text["text"]  # Telegram's way: reply
    pdf = tg.document(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf", "brief.pdf")
    [refused] = await answers_to(tg, tg.send(chat, li, document=pdf, caption="改成水彩"))
    assert refused["text"] == (
        "“brief.pdf”（PDF）不是我能编辑的图片。请发送照片，或 PNG、JPEG、WebP、HEIC 格式的文件。")
    gemini.enqueue_block("SAFETY")
    asked = tg.send(chat, li, photo=make_png(320, 200, seed=5), caption="做点危险的事")
    [blocked] = await answers_to(tg, asked)
    assert blocked["text"].startswith("你的请求被模型的安全过滤器拦截了")
    # an English app in the same bot is still answered in English
    alice, *_ = people(tg)
    [english] = await answers_to(tg, tg.send(tg.private_chat(alice), alice, "/help"))
    assert english["text"].startswith("I edit pictures")
    # and Telegram shows the command menu in Chinese to Chinese apps
    menu = {c["command"]: c["description"] for c in tg.commands_by_language["zh"]}
    assert menu["undo"] == "回退 n 个版本（默认 1 个）"
    assert {c["command"] for c in tg.commands} == set(menu)


# ---------------------------------------------------------------------- fair under a crowd
async def test_a_flooded_group_does_not_delay_a_private_chats_picture(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    """A group has used its 20 messages of the minute and has more answers waiting; a
    person's picture in a private chat still goes out at once, and the group never gets
    a 429 (its answers wait for its own window, holding nothing others need)."""
    settings = make_settings(tg, gemini, tmp_path, chatbrush_shutdown_grace=0.5,
                             **PRODUCTION_FLOOD_DEFAULTS)
    group = tg.group(GROUP_ID)
    crowd = [tg.user(2000 + n, f"Member {n}") for n in range(10)]
    dave = tg.user(1004, "Dave")
    async with running(tg, settings):
        for n in range(30):
            tg.send(group, crowd[n % 10], f"{BOT} draw a lighthouse {n}")
        await tg.wait_for(lambda: len(tg.sent_to(GROUP_ID)) >= 20, what="the group's minute")
        await gemini.wait_for_requests(30)  # every answer is made; the rest wait to go out
        asked = tg.send(tg.private_chat(dave), dave, "draw a fox")
        [answer] = await answers_to(tg, asked)
        assert "photo" in answer
        assert len(tg.sent_to(GROUP_ID)) == 20  # the group waits for its window
    assert not tg.flooded


async def test_a_429_for_one_chat_pauses_only_that_chat(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    settings = make_settings(tg, gemini, tmp_path, chatbrush_shutdown_grace=0.5)
    alice, bob, _ = people(tg)
    group = tg.group(GROUP_ID)
    async with running(tg, settings):
        tg.fail_next("sendPhoto", retry_after=30)
        paused = tg.send(group, alice, f"{BOT} draw a lighthouse")
        await tg.wait_calls("sendPhoto", 1)  # refused: this group waits 30 s
        asked = tg.send(tg.private_chat(bob), bob, "draw a fox")
        [answer] = await answers_to(tg, asked)
        assert "photo" in answer
        assert not [m for m in tg.sent_to(GROUP_ID)
                    if m.get("reply_to_message", {}).get("message_id") == paused["message_id"]]


async def test_a_flooding_person_gets_one_refusal_and_the_rest_are_kept_refused(
    tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
) -> None:
    """Default settings: 10 requests a minute a person. Over it, one short refusal for
    the window; every message stays in the inbox, the refused ones as refused."""
    settings = make_settings(tg, gemini, tmp_path, **PRODUCTION_FLOOD_DEFAULTS)
    alice, *_ = people(tg)
    chat = tg.private_chat(alice)
    async with running(tg, settings) as adapter:
        sent = [tg.send(chat, alice, f"draw a lighthouse {n}") for n in range(16)]
        await tg.wait_polled_past(sent[-1])
        await adapter.intake.drain()
    assert len(gemini.requests) == 10
    texts = [m["text"] for m in tg.sent_to(alice["id"]) if "text" in m]
    assert len([t for t in texts if "faster than allowed" in t]) == 1
    assert len(texts) <= 3  # with "you're next": a handful a minute at most
    with sqlite3.connect(tmp_path / "chatbrush.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status"))
    assert statuses == {"done": 10, "refused": 6}
