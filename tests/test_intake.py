"""The one intake path: stored before acknowledged, once however often delivered, resumed
after a stop, delivered (or re-sent) without paying twice, and failing safe.

Real store files, the real Gemini client against the fake service; the platform is the
recording stand-in of :mod:`tests.harness`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app.runtime import Runtime
from bot.core.events import Attachment, AttachmentKind, ChatKey, Progress, Sender
from bot.core.store import InboxStatus
from bot.flow.intake import clean_text
from tests.fakes.gemini import FakeGemini
from tests.harness import (
    ANN,
    BOB,
    Chat,
    RecordingPlatform,
    photo,
    running_bot,
    settings_for,
)

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and PostgreSQL

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")


# ---------------------------------------------------------------------- storing first
async def test_a_message_is_stored_before_receive_returns(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    fake.pause()
    dm = Chat(bot, platform, PRIVATE, private=True)
    receipt = await dm.send("watercolor", photo())
    assert receipt is not None and receipt.new
    stored = await bot.store.inbox_get(receipt.entry_id)
    assert stored is not None and stored.event.attachments[0].data == photo()
    fake.resume()
    assert await bot.intake.wait(receipt) is InboxStatus.DONE


async def test_a_redelivered_message_is_answered_once(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    event = dm.event("watercolor", photo())
    first = await bot.intake.receive(event)
    again = await bot.intake.receive(event)  # e.g. Telegram resending an unconfirmed update
    assert first is not None and again is not None
    assert again.entry_id == first.entry_id and not again.new
    await bot.intake.drain()
    late = await bot.intake.receive(event)  # and once more after it was answered
    assert late is not None and not late.new
    await bot.intake.drain()
    assert len(fake.requests) == 1
    assert [s.kind for s in dm.channel.sent] == ["images"]


async def test_a_busy_conversation_says_so_and_keeps_order(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    other = Chat(bot, platform, ChatKey("telegram", "43"), private=True)
    bot.intake.queued_notice_delay = 0
    fake.pause()
    await dm.send("watercolor", photo())
    await fake.wait_for_requests(1)
    await dm.send("now add a hat")
    await dm.send("and a scarf")
    await dm.send("and boots")
    await other.send("oil painting", photo())
    await fake.wait_for_requests(2)  # another conversation is not held up
    fake.resume()
    await bot.intake.drain()
    # told once, for the message right behind the running one, not once per message
    assert sum("next in line" in t for t in dm.channel.texts()) == 1
    assert not any("next in line" in t for t in other.channel.texts())
    prompts = [r.prompt for r in fake.requests if r.prompt != "oil painting"]
    assert prompts == ["watercolor", "now add a hat", "and a scarf", "and boots"]
    hat = next(r for r in fake.requests if r.prompt == "now add a hat")
    assert hat.images("model"), "the second turn built on the first answer"


# ---------------------------------------------------------------------- resuming
async def test_a_stop_leaves_the_backlog_stored_and_a_restart_answers_it(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake)
    fake.pause()
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        await dm.say("", photo())  # a bare photo: stored, asked about
        await dm.send("watercolor")
        await fake.wait_for_requests(1)  # the model is working on it...
        await dm.send("now add a hat")
        await dm.send("/history")
        await bot.intake.stop(grace=0)  # ...when the process is told to stop
    assert len(fake.requests) == 1
    fake.resume()
    fake.reset()
    platform.channels.clear()
    async with running_bot(settings, platform) as bot:
        await bot.intake.drain()
        channel = platform.channels[PRIVATE]
        texts = channel.texts()
        # the interrupted call is not repeated behind the user's back…
        assert "I was restarted while the model was working" in texts[0]
        # …and the messages that waited are answered, in order
        assert channel.sent[1].kind == "images" and (channel.sent[1].text or "").startswith("v1")
        assert "v1" in texts[2] and "now add a hat" in texts[2]
        assert [r.prompt for r in fake.requests] == ["now add a hat"]
        # "try again" replays the interrupted turn with its photo, no re-upload
        dm = Chat(bot, platform, PRIVATE, private=True)
        dm.next_id = 100
        retried = await dm.say("try again", reply_to=channel.sent[0].ids[0])
        assert retried.kind == "images"
        assert fake.requests[-1].prompt == "watercolor"  # what was asked, asked again
        assert len(fake.requests[-1].images("user")) == 1
        assert await bot.store.inbox_backlog() == 0


async def test_running_turns_finish_within_the_grace(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake)
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        fake.pause()
        receipt = await dm.send("watercolor", photo())
        await fake.wait_for_requests(1)
        stopping = asyncio.create_task(bot.intake.stop(grace=10))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="shutting down"):
            await dm.send("too late")  # intake is closed first
        fake.resume()
        await stopping
        assert receipt is not None
        entry = await bot.store.inbox_get(receipt.entry_id)
        assert entry is not None and entry.status is InboxStatus.DONE
        assert dm.channel.last.kind == "images"


# ---------------------------------------------------------------------- delivery
async def test_a_picture_that_cannot_be_sent_is_kept_and_resent_without_a_model_call(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    dm.channel.fail_sends = 3  # every retry of the delivery fails
    notice = await dm.say("watercolor", photo())
    assert dm.channel.failed_sends == 3
    assert "ready, but I couldn't send it" in (notice.text or "")
    assert "/resend" in (notice.text or "")
    history = await dm.say("/history")
    assert "No versions yet" in (history.text or "")  # not current until delivered
    resent = await dm.say("/resend")
    assert resent.kind == "images" and (resent.text or "").startswith("v1")
    assert len(fake.requests) == 1  # the stored answer, not a new call
    assert "v1: watercolor — Ann  ← current" in ((await dm.say("/history")).text or "")


async def test_an_undelivered_picture_goes_out_with_the_next_message(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    dm.channel.fail_sends = 3
    await dm.say("watercolor", photo())
    answer = await dm.say("now add a hat")
    v1, v2 = [s for s in dm.channel.sent if s.kind == "images"]
    assert (v1.text or "").startswith("v1") and (v2.text or "").startswith("v2")
    assert answer is v2
    assert len(fake.requests) == 2
    assert fake.requests[1].images("model"), "v2 was made from the delivered v1"


async def test_a_flaky_send_is_retried_invisibly(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    dm.channel.fail_sends = 2
    answer = await dm.say("watercolor", photo())
    assert answer.kind == "images" and dm.channel.failed_sends == 2
    assert not any("couldn't send" in t for t in dm.channel.texts())


# ---------------------------------------------------------------------- failing safe
async def test_an_unreadable_answer_keeps_the_turn_for_try_again(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    # a body that claims gzip but is not: the HTTP client raises while decoding it
    fake.enqueue(raw=b"\x00not gzip at all", headers={"Content-Encoding": "gzip",
                                                     "Content-Type": "application/json"})
    failed = await dm.say("watercolor", photo((10, 200, 10)))
    assert failed.kind == "text" and "Traceback" not in (failed.text or "")
    assert Progress.FAILED in dm.channel.progress_log
    retried = await dm.say("try again")
    assert retried.kind == "images"
    assert len(fake.requests[-1].images("user")) == 1


async def test_an_unexpected_error_is_one_short_line(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform,
    caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_fetch(attachment: Attachment) -> list[object]:
        raise RuntimeError("disk on fire")

    platform.fetch = broken_fetch  # type: ignore[assignment,method-assign]
    dm = Chat(bot, platform, PRIVATE, private=True)
    receipt = await dm.send("watercolor",
                            attachments=(Attachment(AttachmentKind.IMAGE, ref="on-disk"),))
    assert receipt is not None
    assert await bot.intake.wait(receipt) is InboxStatus.FAILED
    assert dm.channel.texts() == [
        "Sorry, something went wrong on my side. Please try again in a moment."]
    assert sum("Traceback" in (r.exc_text or "") or r.exc_info is not None
               for r in caplog.records) == 1


# ---------------------------------------------------------------------- what is ours
async def test_an_album_arriving_item_by_item_is_one_turn(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await group.send("", photo((255, 0, 0)), group_id="album-1", addressed=False)
    await group.send("put the hat from the second on the first", photo((0, 0, 255)),
                     group_id="album-1")
    await group.send("", photo((0, 255, 0)), group_id="album-1", addressed=False)
    await bot.intake.drain()
    assert len(fake.requests) == 1
    assert len(fake.requests[0].images("user")) == 3
    assert fake.requests[0].prompt == "put the hat from the second on the first"
    assert [s.kind for s in group.channel.sent] == ["images"]


async def test_an_album_nobody_addressed_is_ignored(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    for color in ((1, 1, 1), (2, 2, 2)):
        await group.send("", photo(color), group_id="holiday", addressed=False)
    await bot.intake.drain()
    assert fake.requests == [] and group.channel.sent == []


async def test_strangers_get_one_polite_refusal_and_nothing_is_stored(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, telegram_allowed_chats="-100999",
                            telegram_allowed_users="@ann")
    async with running_bot(settings, platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        for _ in range(3):
            assert await group.send("watercolor", photo(), sender=BOB) is None
        allowed = await group.say("watercolor", photo(), sender=ANN)  # listed by username
        await bot.intake.drain()
        refusals = [t for t in group.channel.texts() if "isn't available here" in t]
        assert len(refusals) == 1
        assert allowed.kind == "images" and len(fake.requests) == 1


async def test_text_that_is_not_valid_unicode_is_cleaned_not_fatal(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    answer = await dm.say("make it \udcff red\x00", photo())
    assert answer.kind == "images"
    assert fake.requests[0].prompt == "make it \ufffd red"
    assert clean_text("tab\tand\nnewline\u200d👍") == "tab\tand\nnewline\u200d👍"


async def test_files_that_are_not_pictures_are_refused_before_any_download(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    cases = [
        (Attachment(AttachmentKind.VIDEO, ref="v"), "can't edit videos"),
        (Attachment(AttachmentKind.FILE, ref="d", filename="report.pdf"), "(PDF) isn't an image"),
        (Attachment(AttachmentKind.OTHER), "only work with text and images"),
        (Attachment(AttachmentKind.IMAGE, ref="refuse", size=30_000_000), "too large (30.0 MB)"),
    ]
    for attachment, expected in cases:
        reply = await dm.say("", attachments=(attachment,))
        assert expected in (reply.text or "")
    many = tuple(Attachment(AttachmentKind.IMAGE, ref=str(i), data=photo()) for i in range(17))
    assert "at most 16" in ((await dm.say("fuse", attachments=many)).text or "")
    assert fake.requests == []


async def test_stats_are_for_operators_only(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_admins="telegram:99")
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        assert "operators" in ((await dm.say("/stats")).text or "")
        stats = await dm.say("/stats", sender=Sender("99", "Op"))
        assert "messages in the inbox: 1" in (stats.text or "")


async def test_a_request_waiting_for_a_slot_is_not_called_interrupted(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    """Only a request that left for the model may have been paid for: one still waiting
    in the bot (here behind the concurrency cap) is simply run again after a restart."""
    settings = settings_for(tmp_path, fake, chatbrush_max_concurrent_calls=1)
    fake.pause()
    async with running_bot(settings, platform) as bot:
        first = Chat(bot, platform, PRIVATE, private=True)
        second = Chat(bot, platform, ChatKey("telegram", "43"), private=True)
        await first.send("watercolor", photo())
        await fake.wait_for_requests(1)
        waiting = await second.send("oil painting", photo())
        assert waiting is not None
        await bot.intake.stop(grace=0)  # the first is at the model, the second in line
        entry = await bot.store.inbox_get(waiting.entry_id)
        assert entry is not None and not entry.call_started
    fake.resume()
    platform.channels.clear()
    async with running_bot(settings, platform) as bot:
        await bot.intake.drain()
    texts = {chat: channel.texts() for chat, channel in platform.channels.items()}
    assert "restarted while the model" in texts[PRIVATE][0]
    assert platform.channels[ChatKey("telegram", "43")].sent[-1].kind == "images"
    assert [r.prompt for r in fake.requests].count("oil painting") == 1


async def test_a_message_taken_over_by_another_process_is_not_called_twice(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    """A process whose lease ran out while its request waited (stalled, or unable to renew)
    steps aside when it gets to the model: the process that took the message over calls,
    answers and finishes it; this one neither calls nor tells the user anything."""
    # two turns at once: with both running, this process claims nothing more, so the
    # message it gives up goes to the other process, not back to itself
    settings = settings_for(tmp_path, fake, chatbrush_max_concurrent_calls=1,
                            chatbrush_concurrent_turns=2)
    fake.pause()
    async with running_bot(settings, platform) as bot:
        first = Chat(bot, platform, PRIVATE, private=True)
        second = Chat(bot, platform, ChatKey("telegram", "43"), private=True)
        await first.send("watercolor", photo())
        await fake.wait_for_requests(1)
        waiting = await second.send("oil painting", photo())  # behind the cap of 1
        assert waiting is not None
        queued_chat = platform.channels[ChatKey("telegram", "43")]
        await queued_chat.wait_for_text("queued")  # its request waits for a slot
        # the lease runs out and another process claims the message
        await bot.store.inbox_release(bot.intake.owner, [waiting.entry_id])
        [taken] = await bot.store.inbox_claim("other", limit=1, lease_seconds=60,
                                              platforms=("telegram",))
        assert taken.id == waiting.entry_id
        fake.resume()
        status = await bot.intake.wait(waiting)
        assert status is InboxStatus.PROCESSING  # left to the other process
        entry = await bot.store.inbox_get(waiting.entry_id)
        assert entry is not None and entry.status is InboxStatus.PROCESSING
        assert not entry.call_started
        assert [r.prompt for r in fake.requests] == ["watercolor"]
        assert [s.kind for s in queued_chat.sent] == ["text"]  # the queue notice alone


#: the one time bound of the crowd test below: on two busy cores the 300 requests take
#: from seconds to a minute to arrive, and no model call may give up before the test does
CROWD_WAIT = 240.0


@pytest.mark.slow
@pytest.mark.timeout(CROWD_WAIT)
async def test_hundreds_of_conversations_wait_on_the_model_at_once(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    """With 5-second model calls a process reaches its CPU limit only with some 500 turns
    in flight, so by default it runs more than 256 at once."""
    patient = settings_for(tmp_path, fake, gemini_timeout=CROWD_WAIT,
                           gemini_retry_budget=CROWD_WAIT)
    async with running_bot(patient, platform) as bot:
        chats = [Chat(bot, platform, ChatKey("telegram", str(9000 + n)), private=True)
                 for n in range(300)]
        fake.pause()
        for chat in chats:
            await chat.send("a lighthouse at dawn")
        # every call under way together, however long the machine takes to start them
        await fake.wait_for_requests(len(chats), within=CROWD_WAIT)
        fake.resume()
        await bot.intake.drain()
    assert all(chat.channel.last.kind == "images" for chat in chats)
