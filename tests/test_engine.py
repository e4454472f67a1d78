"""The turn service end to end: real SQLite file, real intake and router, real httpx
against the fake Gemini server. The only stand-ins are the two ports an adapter implements
(:mod:`tests.harness`): a recording channel and a platform that fetches inline bytes.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from bot.app.runtime import Runtime
from bot.core.events import ChatKey, Progress, Sender
from bot.flow.commands.conversation import contact_sheet_of
from bot.flow.delivery import DELIVERIES_IN_HAND
from bot.flow.model_step import ANSWERS_IN_HAND
from bot.history.contact_sheet import CURRENT_COLOUR
from tests.fakes.gemini import FakeGemini
from tests.harness import (
    ANN,
    BOB,
    Chat,
    RecordingPlatform,
    photo,
    pixels,
    running_bot,
    settings_for,
)

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and PostgreSQL

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")


def dm_of(bot: Runtime, platform: RecordingPlatform, key: ChatKey = PRIVATE) -> Chat:
    return Chat(bot, platform, key, private=True)


def group_of(bot: Runtime, platform: RecordingPlatform) -> Chat:
    return Chat(bot, platform, GROUP, private=False)


async def test_multi_turn_edit_replays_the_model_turn_with_its_signatures(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    first = await dm.say("make it watercolor", photo())
    assert first.kind == "images" and first.text and first.text.startswith("v1")
    second = await dm.say("now add a hat")
    assert second.kind == "images" and second.text and second.text.startswith("v2")

    answer = fake.answers[0]["candidates"][0]["content"]["parts"]
    replayed = fake.requests[1].contents[1]
    assert replayed["role"] == "model"
    assert replayed["parts"] == [p for p in answer if not p.get("thought")] or \
        replayed["parts"] == answer
    assert fake.requests[1].prompt == "now add a hat"


async def test_gemini_3_conversation_passes_the_strict_signature_check(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, gemini_model="gemini-3-pro-image-preview")
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        for prompt in ("make it watercolor", "add a hat", "add a scarf"):
            reply = await dm.say(prompt, *([photo()] if prompt.startswith("make") else []))
            assert reply.kind == "images", reply.text
    assert all(r.status == 200 for r in fake.requests)


async def test_replying_to_an_older_version_branches_and_keeps_both(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    v1 = await dm.say("watercolor", photo())
    v2 = await dm.say("add a hat")
    v3 = await dm.say("a red scarf instead", reply_to=v1.ids[0])
    assert v3.text and v3.text.startswith("v3")
    branch_request = fake.requests[-1]
    assert "add a hat" not in branch_request.texts()
    assert pixels(branch_request.images("model")[-1]) == pixels(v1.images[0].data)
    history = await dm.say("/history")
    assert "v2 (from v1): add a hat — Ann  [other branch]" in (history.text or "")
    assert "v3 (from v1): a red scarf instead — Ann  ← current" in (history.text or "")
    # the old branch is still reachable: replying to v2 continues from it
    await dm.say("make the hat blue", reply_to=v2.ids[0])
    assert "add a hat" in fake.requests[-1].texts()


async def test_history_is_a_contact_sheet_of_the_branched_thread_with_the_list(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    assert (await dm.say("/history")).kind == "text"  # no conversation, no picture
    v1 = await dm.say("watercolor", photo((200, 30, 30)))
    await dm.say("add a hat")
    await dm.say("a red scarf instead", reply_to=v1.ids[0])

    history = await dm.say("/history")

    assert history.kind == "images" and len(history.images) == 1
    assert "v3 (from v1): a red scarf instead — Ann  ← current" in (history.text or "")
    thread = await bot.store.current_thread(PRIVATE)
    assert thread is not None
    sheet = await contact_sheet_of(bot.store, await bot.store.turns_of(thread.id),
                                   thread.head_id)
    assert sheet is not None and sheet.png == history.images[0].data  # this sheet was sent
    assert [tile.label for tile in sheet.tiles] == ["original", "v1", "v2", "v3"]
    assert sheet.current is not None and sheet.current.label == "v3"
    row = {tile.label: tile.row for tile in sheet.tiles}
    assert row["v1"] == row["v2"] != row["v3"]  # the branch has a lane of its own
    image = Image.open(io.BytesIO(history.images[0].data)).convert("RGB")
    for tile in sheet.tiles:
        left, top, _, bottom = tile.box
        frame = image.getpixel((left - 4, (top + bottom) // 2))
        assert (frame == CURRENT_COLOUR) is tile.is_current, tile.label
    # the thumbnails are the versions: v1 is the inverted photo, v2 inverted back
    def centre(label: str) -> tuple[int, int, int]:
        left, top, right, bottom = sheet.tile(label).box
        red, green, blue = image.getpixel(((left + right) // 2, (top + bottom) // 2))
        return red, green, blue

    assert centre("v1")[0] < 100 < 180 < centre("v1")[1]
    assert centre("v2")[0] > 180 > 100 > centre("v2")[1]
    # a reply to the sheet continues from the current version
    await dm.say("now a blue hat", reply_to=history.ids[0])
    assert "a red scarf instead" in fake.requests[-1].texts()


async def test_a_long_history_list_follows_the_sheet_as_its_own_message(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    await dm.say("start from this photo and make it a watercolor painting", photo())
    for number in range(15):
        await dm.say(f"edit number {number}: make the light a little warmer and softer")
    await dm.say("/history")
    sheet, listing = dm.channel.sent[-2:]
    assert sheet.kind == "images" and not sheet.text
    assert listing.kind == "text" and (listing.text or "").count("\nv") == 16


async def test_undo_moves_back_and_the_next_edit_continues_from_there(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    v1 = await dm.say("watercolor", photo())
    await dm.say("add a hat")
    undone = await dm.say("/undo")
    assert undone.kind == "images" and "Back to v1" in (undone.text or "")
    assert pixels(undone.images[0].data) == pixels(v1.images[0].data)
    await dm.say("add glasses")
    assert "add a hat" not in fake.requests[-1].texts()
    far = await dm.say("/undo 5")
    assert "Undid 2 versions. Back to the original." in (far.text or "")


async def test_undo_beyond_the_start_and_bad_arguments(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    assert "no conversation yet" in ((await dm.say("/undo")).text or "")
    await dm.say("watercolor", photo())
    back = await dm.say("/undo 9")
    assert "Back to the original" in (back.text or "")
    assert "Nothing to undo" in ((await dm.say("/undo")).text or "")
    assert "from 1 to 50" in ((await dm.say("/undo lots")).text or "")


async def test_conversation_survives_a_restart(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake)
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        v1 = await dm.say("watercolor", photo())
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        dm.next_id = 10
        await dm.say("now add a hat")
        assert pixels(fake.requests[-1].images("model")[-1]) == pixels(v1.images[0].data)
        history = (await dm.say("/history")).text or ""
        assert "v1: watercolor" in history and "v2 (from v1): now add a hat" in history


async def test_a_failed_call_keeps_the_turn_and_try_again_reuses_the_photo(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    fake.enqueue_error(400, "Request contains an invalid argument.")
    failed = await dm.say("make it watercolor", photo((10, 200, 10)))
    assert failed.kind == "text" and "Traceback" not in (failed.text or "")
    assert Progress.FAILED in dm.channel.progress_log
    assert len(fake.requests) == 1  # a 400 is not retried

    retried = await dm.say("try again please")
    assert retried.kind == "images"
    request = fake.requests[-1]
    assert len(request.images("user")) == 1  # the photo came back without a re-upload
    # the same instruction again, sent once: the failed turn itself stays out of context
    assert request.prompt == "make it watercolor"
    assert request.texts().count("make it watercolor") == 1
    usage = (await dm.say("/usage")).text or ""
    assert "2 model calls (1 failed)" in usage
    other = await dm.say("now blur it")  # a new instruction after a success is just that
    assert other.kind == "images" and fake.requests[-1].prompt == "now blur it"


async def test_refusal_is_shown_clearly(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    fake.enqueue_block("SAFETY")
    reply = await dm.say("something unsafe", photo())
    assert reply.kind == "text"
    assert "safety" in (reply.text or "").lower() or "block" in (reply.text or "").lower()


async def test_rate_limit_then_success_is_invisible_to_the_user(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    fake.enqueue_error(429, retry_delay="0.05s")
    fake.enqueue_error(503)
    reply = await dm.say("watercolor", photo())
    assert reply.kind == "images"
    assert len(fake.requests) == 3


async def test_bad_images_are_refused_without_a_model_call(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    corrupt = photo()[:200]
    for data, expected in ((corrupt, "image"), (b"%PDF-1.7\n...", "PDF"),
                           (b"hello, not an image", "not an image")):
        reply = await dm.say("watercolor", data)
        assert reply.kind == "text" and expected.lower() in (reply.text or "").lower()
    album = await dm.say("fuse", photo(), corrupt)
    assert "Image 2 of 2" in (album.text or "")
    assert fake.requests == []


async def test_empty_and_enormous_prompts(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    assert "too long" in ((await dm.say("x" * 5000)).text or "")
    picture_only = await dm.say("", photo())
    assert "What should I do with it?" in (picture_only.text or "")
    assert fake.requests == []
    await dm.say("make it watercolor")  # the photo sent alone is the input
    assert len(fake.requests[-1].images("user")) == 1


async def test_text_only_prompt_generates_and_album_fuses(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    made = await group.say("a cat in a hat")
    assert made.kind == "images" and fake.requests[-1].images() == []
    fused = await group.say("put the hat from the second on the first", photo(), photo((0, 0, 255)))
    assert fused.kind == "images" and len(fake.requests[-1].images("user")) == 2


async def test_group_messages_start_separate_threads(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    await group.say("watercolor", photo())
    await group.say("oil painting", photo((0, 0, 200)), sender=BOB)
    assert [len(r.contents) for r in fake.requests] == [1, 1]


async def test_reply_to_someone_elses_photo_starts_from_that_photo(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    posted = photo((1, 2, 250))
    reply = await group.say("make it black and white", reply_to="555", reply_images=[posted])
    assert reply.kind == "images"
    sent = fake.requests[-1].images("user")
    assert len(sent) == 1
    assert Image.open(io.BytesIO(sent[0])).size == (320, 240)


async def test_reset_needs_an_admin_in_groups(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_admins="telegram:99")
    async with running_bot(settings, platform) as bot:
        group = group_of(bot, platform)
        v1 = await group.say("watercolor", photo())
        refused = await group.say("/reset", reply_to=v1.ids[0], sender=BOB)
        assert "only chat admins" in (refused.text or "")
        group.channel.admins.add(ANN.id)
        done = await group.say("/reset", reply_to=v1.ids[0], sender=ANN)
        assert "forgot" in (done.text or "")
        # and a configured admin may too, on another thread
        v1b = await group.say("oil", photo())
        assert "forgot" in ((await group.say("/reset", reply_to=v1b.ids[0],
                                             sender=Sender("99", "Op"))).text or "")
        stats = await group.say("/stats", sender=Sender("99", "Op"))
        assert "threads: 0" in (stats.text or "")


async def test_turns_of_one_thread_wait_in_order_others_run_alongside(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    other = dm_of(bot, platform, ChatKey("telegram", "43"))
    bot.intake.queued_notice_delay = 0
    fake.pause()
    await dm.send("watercolor", photo())
    await fake.wait_for_requests(1)
    await dm.send("now add a hat")
    await other.send("oil painting", photo())
    await fake.wait_for_requests(2)  # the other chat's request is in flight meanwhile
    assert {r.prompt for r in fake.requests} == {"watercolor", "oil painting"}
    fake.resume()
    await bot.intake.drain()
    assert Progress.QUEUED in dm.channel.progress_log
    assert any("next in line" in t for t in dm.channel.texts())
    hat = next(r for r in fake.requests if r.prompt == "now add a hat")
    assert hat.images("model"), "the queued turn built on the first answer"


async def test_answers_that_come_in_together_are_read_a_few_at_a_time_and_all_arrive(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    chats = [dm_of(bot, platform, ChatKey("telegram", str(500 + n)))
             for n in range(2 * ANSWERS_IN_HAND + 2)]
    useless = ANSWERS_IN_HAND + 1  # more than there are places: none may keep one
    fake.pause()
    for chat in chats:
        await chat.send("watercolor", photo())
    await fake.wait_for_requests(len(chats))
    for _ in range(useless):
        fake.enqueue_text_only()
    fake.resume()
    await asyncio.wait_for(bot.intake.drain(), 60)
    kinds = [chat.channel.last.kind for chat in chats]
    assert kinds.count("images") == len(chats) - useless and kinds.count("text") == useless
    assert len(fake.requests) == len(chats)


async def test_answers_waiting_to_be_sent_wait_without_their_pictures_and_all_go_out(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    """A burst finishes faster than a platform lets pictures out (Telegram: about 30 a
    second). Only a bounded number of deliveries read and sign their pictures; the others
    wait stored, and every one is delivered once the platform takes them."""
    gate = platform.hold_pictures()
    chats = [dm_of(bot, platform, ChatKey("telegram", str(700 + n)))
             for n in range(DELIVERIES_IN_HAND + 6)]
    for chat in chats:
        await chat.send("watercolor", photo())
    await fake.wait_for_requests(len(chats), within=30)
    await gate.wait_for_waiting(DELIVERIES_IN_HAND)

    async def stored_answers() -> int:
        threads = [await bot.store.current_thread(chat.key) for chat in chats]
        return sum([len(await bot.store.undelivered(t.id)) for t in threads if t is not None])

    async with asyncio.timeout(30):  # every answer is stored, waiting to go out
        while await stored_answers() < len(chats):  # noqa: ASYNC110 (no event for a row)
            await asyncio.sleep(0.01)
    assert gate.waiting == DELIVERIES_IN_HAND  # the rest wait without their pictures
    gate.opened.set()
    await asyncio.wait_for(bot.intake.drain(), 60)
    assert gate.most_waiting == DELIVERIES_IN_HAND
    assert all(chat.channel.last.kind == "images" for chat in chats)
    assert len(fake.requests) == len(chats)


@pytest.mark.slow
async def test_hundred_turn_thread_stays_bounded(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_context_bytes=400_000)
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        await dm.say("start", photo(size=(640, 480)))
        for i in range(99):
            await dm.say(f"edit number {i}")
    sizes = [len(r.body) for r in fake.requests]
    images = [len(r.images()) for r in fake.requests]
    assert len(fake.requests) == 100
    assert max(images) <= 3
    # the inline payload stays within the budget (plus JSON framing)
    assert max(sizes) < 400_000 * 1.1
    assert fake.requests[-1].images("model"), "the image being edited is always sent"


async def test_group_chatter_not_meant_for_the_bot_gets_no_answer(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    assert await group.send("nice weather", sender=BOB, addressed=False) is None
    await bot.intake.drain()
    assert group.channel.sent == [] and fake.requests == []
    stats = await bot.store.stats()
    assert stats.threads == 0 and stats.inbox_backlog == 0


async def test_an_oversized_upload_is_refused_clearly(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_max_upload_bytes=50_000)
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
        buffer = io.BytesIO()
        noise.save(buffer, "PNG")  # about 270 KB: over the 50 KB limit set above
        reply = await dm.say("watercolor", buffer.getvalue())
        assert reply.kind == "text" and "too large (270 kB)" in (reply.text or "")
        assert "up to 50 kB" in (reply.text or "")
        assert fake.requests == []


async def test_a_quick_reply_cannot_overtake_the_photo_sent_before_it(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = dm_of(bot, platform)
    big = photo(size=(3000, 2200))  # takes a while to normalise
    photo_first = asyncio.create_task(dm.say("", big))
    await asyncio.sleep(0)
    text_second = asyncio.create_task(dm.say("make it watercolor"))
    await asyncio.gather(photo_first, text_second)
    answers = [s for s in dm.channel.sent if "next in line" not in (s.text or "")]
    assert "What should I do with it?" in (answers[0].text or "")
    assert answers[1].kind == "images"
    assert len(fake.requests) == 1
    assert len(fake.requests[0].images("user")) == 1  # the instruction saw the photo


async def test_help_and_hints_use_the_platforms_command_syntax(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    helped = await group.say("/help", command_prefix="<@B1> ")
    assert "<@B1> undo [n] — go back" in (helped.text or "")
    hint = await group.say("/undo many", command_prefix="<@B1> ")
    assert "Use <@B1> undo or <@B1> undo N" in (hint.text or "")


async def test_replying_to_the_question_about_a_bare_photo_continues_with_it(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = group_of(bot, platform)
    question = await group.say("", photo())
    assert "What should I do with it?" in (question.text or "")
    reply = await group.say("make it watercolor", reply_to=question.ids[0])
    assert reply.kind == "images"
    assert len(fake.requests[-1].images("user")) == 1


async def test_a_refused_reply_image_is_explained(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    from bot.core.events import Attachment, AttachmentKind

    group = group_of(bot, platform)
    refused = Attachment(AttachmentKind.IMAGE, ref="refuse")
    reply = await group.say("edit this", reply_to="77", reply_attachments=(refused,))
    assert reply.text == "That file is 30 MB; bots can download 20 MB at most."
    assert fake.requests == []


async def test_a_long_thread_sends_only_its_newest_turns(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_context_turns=6)
    async with running_bot(settings, platform) as bot:
        dm = dm_of(bot, platform)
        await dm.say("edit number 0", photo())
        for i in range(1, 12):
            await dm.say(f"edit number {i}")
    last = fake.requests[-1]
    assert len(last.contents) <= 6
    assert "edit number 11" in last.texts() and "edit number 0" not in last.texts()
    assert last.images("model"), "the picture being edited still goes"
