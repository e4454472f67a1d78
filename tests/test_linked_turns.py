"""Linked edits end to end: real SQLite file, real intake, router and turn service, real
httpx against the fake Gemini server; the platform is the recording stand-in of
:mod:`tests.harness`.

Three pictures in three colours go in; the fake model answers each request with the
colour-inverted copy of its newest input picture, so every request and every result
can be told apart by its colour.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bot.app.runtime import Runtime
from bot.core.chat_settings import ChatSettings
from bot.core.errors import UserFacingError
from bot.core.events import ChatKey, Progress
from bot.core.store import InboxStatus
from bot.core.threads import TurnStatus
from bot.core.work import Work
from bot.flow.commands.conversation import contact_sheet_of
from bot.flow.each_turns import STYLE_REFERENCE, parse_each
from bot.policy.budgets import Budgets
from tests.fakes.gemini import FakeGemini
from tests.harness import Chat, RecordingPlatform, Sent, photo, running_bot, settings_for

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")
Rgb = tuple[int, int, int]
RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
COLOURS = (RED, GREEN, BLUE)


def colour_of(data: bytes) -> Rgb:
    with Image.open(io.BytesIO(data)) as image:
        r, g, b = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return r, g, b


def which(data: bytes, palette: Sequence[Rgb] = COLOURS) -> int:
    """The index of the palette colour closest to the picture's average colour."""
    r, g, b = colour_of(data)
    return min(range(len(palette)), key=lambda i: abs(palette[i][0] - r)
               + abs(palette[i][1] - g) + abs(palette[i][2] - b))


def inverted(colour: Rgb) -> Rgb:
    return (255 - colour[0], 255 - colour[1], 255 - colour[2])


RESULT_COLOURS = tuple(inverted(c) for c in COLOURS)


async def send_album(chat: Chat, caption: str, colours: Sequence[Rgb] = COLOURS,
                     **fields: object) -> list[str]:
    """An album as Telegram delivers it: one message per picture, the caption on the
    first; returns the message ids."""
    group_id = f"album-{chat.next_id}"
    ids = []
    for index, colour in enumerate(colours):
        ids.append(str(chat.next_id))
        await chat.send(caption if index == 0 else "", photo(colour), group_id=group_id,
                        **fields)
    await chat.runtime.intake.drain()
    return ids


def results(chat: Chat) -> Sent:
    [sent] = [s for s in chat.channel.sent if s.kind == "images"]
    return sent


# ---------------------------------------------------------------------- one edit each
async def test_an_album_of_three_with_each_is_three_edits_linked_to_three_versions(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await send_album(group, "/each make the background white")

    assert len(fake.requests) == 3
    asked = sorted(which(r.images("user")[0]) for r in fake.requests)
    assert asked == [0, 1, 2]  # every picture once…
    assert all(len(r.images()) == 1 for r in fake.requests)  # …and alone
    assert {r.prompt for r in fake.requests} == {"make the background white"}

    sent = results(group)  # one message with all three, in the pictures' order
    versions = set()
    assert [which(i.data, RESULT_COLOURS) for i in sent.images] == [0, 1, 2]
    assert sent.text is not None and "v1" in sent.text and "v3" in sent.text
    for index, message_id in enumerate(sent.ids):
        answer = await bot.store.linked_turn(GROUP, message_id)
        assert answer is not None and answer.is_model and answer.status is TurnStatus.OK
        request = await bot.store.get_turn(answer.parent_id or 0)
        assert request is not None
        picture = await bot.store.image_bytes(request.images[0].sha256)
        assert which(picture) == index  # the id of result i leads to picture i's edit
        versions.add(answer.version)
    assert versions == {1, 2, 3}
    assert Progress.DONE in group.channel.progress_log


async def test_history_draws_the_three_results_as_branches_of_the_album(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await send_album(group, "/each make the background white")
    sent = results(group)
    history = await group.say("/history", reply_to=sent.ids[0])
    assert history.kind == "images"
    answer = await bot.store.linked_turn(GROUP, sent.ids[0])
    assert answer is not None
    thread = await bot.store.get_thread(answer.thread_id)
    assert thread is not None
    sheet = await contact_sheet_of(bot.store, await bot.store.turns_of(thread.id),
                                   thread.head_id)
    assert sheet is not None and sheet.png == history.images[0].data
    assert [t.label for t in sheet.tiles] == ["original", "v1", "v2", "v3"]
    assert len({t.row for t in sheet.tiles if t.version}) == 3  # a lane per picture
    assert {(link.parent, link.child) for link in sheet.links} == {
        ("original", "v1"), ("original", "v2"), ("original", "v3")}
    last = await bot.store.linked_turn(GROUP, sent.ids[-1])  # the last picture's result
    assert last is not None and thread.head_id == last.id
    assert sheet.current is not None and sheet.current.label == f"v{last.version}"


async def test_a_reply_to_the_second_result_continues_only_the_second(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await send_album(group, "/each make the background white")
    second = results(group)

    await group.say("now add a hat", reply_to=second.ids[1])

    request = fake.requests[-1]
    assert [which(i) for i in request.images("user")] == [1]
    assert [which(i, RESULT_COLOURS) for i in request.images("model")] == [1]
    assert request.texts() == ["make the background white", "now add a hat"]
    head = await bot.store.linked_turn(GROUP, group.channel.last.ids[0])
    assert head is not None and head.version == 4


async def test_the_three_edits_run_at_the_same_time(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    fake.pause()  # no answer until all three requests are in
    await group.send("/each make the background white", *(photo(c) for c in COLOURS))
    await fake.wait_for_requests(3)
    assert fake.answers == [] and group.channel.sent == []
    fake.resume()
    await bot.intake.drain()
    assert len(results(group).images) == 3


async def test_the_caption_that_asks_for_each_picture_in_english_or_chinese(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    await dm.say("make all of them black and white", *(photo(c) for c in COLOURS))
    assert len(fake.requests) == 3
    assert {r.prompt for r in fake.requests} == {"make all of them black and white"}
    assert all(len(r.images("user")) == 1 for r in fake.requests)

    group = Chat(bot, platform, GROUP, private=False)
    await group.say("每张都换成白色背景", photo(RED), photo(BLUE))
    chinese = fake.requests[3:]
    assert len(chinese) == 2 and {r.prompt for r in chinese} == {"每张都换成白色背景"}
    assert all(len(r.images("user")) == 1 for r in chinese)


async def test_several_pictures_are_still_fused_by_default(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await group.say("make it watercolor", photo(RED), photo(BLUE))
    await group.say("put the hat from each photo on the first one", *(photo(c) for c in COLOURS))
    assert [len(r.images("user")) for r in fake.requests] == [2, 3]


async def test_one_of_three_failing_is_named_and_the_other_two_are_delivered(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    fake.enqueue_block("SAFETY")  # whichever request comes first is refused
    await send_album(group, "/each make the background white")

    refused = which(fake.requests[0].images("user")[0])
    sent = results(group)
    assert len(sent.images) == 2
    assert [which(i.data, RESULT_COLOURS) for i in sent.images] == [
        i for i in range(3) if i != refused]
    assert f"Picture {refused + 1} of 3 was not edited" in (sent.text or "")
    assert "safety" in (sent.text or "").lower()
    history = (await group.say("/history", reply_to=sent.ids[0])).text or ""
    assert "v1" in history and "v2" in history and "v3" not in history


async def test_every_picture_failing_is_one_message_naming_each(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    fake.enqueue_error(400, "Request contains an invalid argument.", times=2)
    await send_album(group, "/each make the background white", COLOURS[:2])
    [told] = group.channel.sent
    assert told.kind == "text"
    assert "Picture 1 of 2" in (told.text or "") and "Picture 2 of 2" in (told.text or "")
    assert Progress.FAILED in group.channel.progress_log


class BudgetForTwo(Budgets):
    """An operator's budget that covers two more model calls (however the limits are set,
    the turn service asks this one question)."""

    async def admit(self, work: Work, chosen: ChatSettings, *, calls: int,
                    exempt: bool) -> None:
        if calls > 2:
            raise UserFacingError(f"That needs {calls} model calls; your budget covers 2.")


async def test_a_budget_that_covers_two_of_three_refuses_before_any_call(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    bot.turns.budgets = BudgetForTwo(bot.store, bot.turns.settings, bot.turns.prices,
                                     clock=bot.turns.clock)
    group = Chat(bot, platform, GROUP, private=False)
    await send_album(group, "/each make the background white")
    assert fake.requests == []
    assert [s.text for s in group.channel.sent] == [
        "That needs 3 model calls; your budget covers 2."]
    await send_album(group, "/each make the background white", COLOURS[:2])
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------- albums sent before
async def test_each_alone_as_a_reply_to_an_album_uses_its_pictures_and_caption(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    album = await send_album(group, "make it look like a watercolor")  # fused: one call
    assert len(fake.requests) == 1

    await group.say("/each", reply_to=album[2])

    each = fake.requests[1:]
    assert len(each) == 3 and all(len(r.images()) == 1 for r in each)
    assert {r.prompt for r in each} == {"make it look like a watercolor"}
    assert sorted(which(r.images()[0]) for r in each) == [0, 1, 2]
    # the album still leads to its pictures, for another instruction
    await group.say("/each make it sepia", reply_to=album[0])
    assert len(fake.requests) == 7


async def test_each_after_an_album_that_waits_for_an_instruction(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    await dm.say("", photo(RED), photo(GREEN))
    assert "What should I do with them?" in (dm.channel.last.text or "")
    await dm.say("/each make it sepia")
    assert [len(r.images()) for r in fake.requests] == [1, 1]
    assert len(results(dm).images) == 2


async def test_each_with_one_picture_is_an_ordinary_edit_and_with_none_explains(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    one = await group.say("/each make it sepia", photo(RED))
    assert one.kind == "images" and fake.requests[-1].prompt == "make it sepia"
    none = await group.say("/each make it sepia")
    assert "/each makes the same edit on each of several pictures" in (none.text or "")
    empty = await group.say("/each", photo(RED), photo(BLUE))
    assert "Tell me what to do with each picture" in (empty.text or "")
    slash = await group.say("/each make it sepia", thread_unknown=True,
                            command_prefix="/chatbrush ")  # Slack's private slash answer
    assert "Send /chatbrush each in a message with the pictures" in (slash.text or "")
    assert len(fake.requests) == 1


# ---------------------------------------------------------------------- consistent mode
async def test_consistent_mode_passes_the_first_result_to_the_others(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, GROUP, private=False)
    await send_album(group, "/each consistent give it a film look")

    lead, *rest = fake.requests
    assert len(lead.images()) == 1 and len(rest) == 2
    for request in rest:
        reference, picture = request.images("user")
        assert which(reference, RESULT_COLOURS) == which(lead.images()[0])
        assert which(picture) != which(lead.images()[0])
        assert STYLE_REFERENCE in request.texts()
        assert request.prompt.endswith("give it a film look")
    assert len(results(group).images) == 3


def test_the_consistent_keyword_and_a_leading_each_phrase() -> None:
    assert parse_each("consistent make it white").consistent
    assert parse_each("统一 换成白色背景").instruction == "换成白色背景"
    assert parse_each("make it white") == parse_each(" make it white ")
    assert parse_each("of them in watercolor").instruction == "each of them in watercolor"


# ---------------------------------------------------------------------- restarts
async def test_a_restart_delivers_what_was_stored_and_names_the_interrupted_call(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_shutdown_grace=0.0)
    async with running_bot(settings, platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        fake.enqueue()  # the lead answers at once…
        fake.enqueue(delay=30)  # …one of the other two is still working at the stop
        await group.send("/each consistent give it a film look", photo(RED), photo(GREEN),
                         photo(BLUE))
        await fake.wait_for_requests(3)
        async with asyncio.timeout(10):  # the lead's answer and one more are stored
            while (await bot.store.stats()).undelivered_answers < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert group.channel.sent == []
    platform.channels.clear()

    async with running_bot(settings, platform) as bot:
        await bot.intake.drain()
        channel = platform.channels[GROUP]
        assert len(fake.requests) == 3  # nothing asked twice
        [sent] = channel.sent
        assert len(sent.images) == 2
        assert "was not edited: I was restarted" in (sent.text or "")
        assert await bot.store.inbox_backlog() == 0


async def test_a_restart_runs_the_calls_that_never_began(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_shutdown_grace=0.0)
    async with running_bot(settings, platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        fake.enqueue(delay=30)  # the lead of a consistent edit is working at the stop
        await group.send("/each consistent give it a film look", photo(RED), photo(GREEN),
                         photo(BLUE))
        await fake.wait_for_requests(1)
    first = which(fake.requests[0].images()[0])
    platform.channels.clear()

    async with running_bot(settings, platform) as bot:
        await bot.intake.drain()
        assert len(fake.requests) == 3  # the two that never began, once each
        assert all(which(r.images("user")[-1]) != first for r in fake.requests[1:])
        assert len(fake.requests[2].images("user")) == 2  # the new lead is the reference
        [sent] = platform.channels[GROUP].sent
        assert len(sent.images) == 2
        assert f"Picture {first + 1} of 3 was not edited: I was restarted" in (sent.text or "")
        entry = await bot.store.inbox_get(1)
        assert entry is not None and entry.status is InboxStatus.DONE


class BudgetForOne(Budgets):
    async def admit(self, work: Work, chosen: ChatSettings, *, calls: int,
                    exempt: bool) -> None:
        if calls > 1:
            raise UserFacingError("Your budget covers 1 more model call.")


async def test_after_a_restart_the_budget_is_asked_again_for_what_never_began(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_shutdown_grace=0.0)
    async with running_bot(settings, platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        fake.enqueue(delay=30)
        await group.send("/each consistent give it a film look", photo(RED), photo(GREEN),
                         photo(BLUE))
        await fake.wait_for_requests(1)
    platform.channels.clear()

    async with running_bot(settings, platform) as bot:
        bot.turns.budgets = BudgetForOne(bot.store, bot.turns.settings, bot.turns.prices,
                                         clock=bot.turns.clock)
        await bot.intake.drain()
        assert len(fake.requests) == 1  # the two that never began were not admitted
        [told] = platform.channels[GROUP].sent
        assert told.kind == "text"
        assert (told.text or "").count("was not edited: Your budget covers 1") == 2
        assert (told.text or "").count("was not edited: I was restarted") == 1
