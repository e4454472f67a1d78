"""Budgets, rate limits and the concurrency cap, end to end: real intake, engine, SQLite
file and httpx against the fake Gemini service; "now" is a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.app.runtime import Runtime
from bot.core.events import ChatKey, Progress, Sender
from bot.core.store import InboxStatus
from bot.kit.i18n import speaking
from bot.policy.budgets import day_and_month, next_month
from tests.fakes.gemini import FakeGemini
from tests.harness import (
    ANN,
    BOB,
    FLOOD_DEFAULTS_LIFTED,
    Chat,
    RecordingPlatform,
    photo,
    running_bot,
    settings_for,
)

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")
OPERATOR = Sender("99", "Op")


class Clock:
    """Wall-clock time that only moves when the test says so."""

    def __init__(self, when: str) -> None:
        self.now = datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: str) -> None:
        self.now = datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


@asynccontextmanager
async def bot_at(clock: Clock, tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform,
                 **settings: Any) -> AsyncIterator[Runtime]:
    async with running_bot(settings_for(tmp_path, fake, **settings), platform) as bot:
        bot.turns.clock = clock
        yield bot


async def test_a_daily_budget_reached_mid_day_refuses_until_midnight(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-10T12:00:00")
    # one 2.5 Flash Image edit costs about $0.039 and is estimated at $0.05
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_user_daily_usd="0.10") as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        assert (await dm.say("watercolor", photo())).kind == "images"
        assert (await dm.say("add a hat")).kind == "images"
        refused = await dm.say("add a scarf")
        assert refused.kind == "text"
        assert "daily budget of $0.10" in (refused.text or "")
        assert "00:00 UTC, in about 12 hours" in (refused.text or "")
        assert len(fake.requests) == 2  # no model call
        assert Progress.WORKING not in dm.channel.progress_log[-1:]
        # another person still has their own budget
        group = Chat(bot, platform, GROUP, private=False)
        assert (await group.say("oil painting", photo(), sender=BOB)).kind == "images"

        clock.set("2026-03-11T00:00:01")
        again = await dm.say("try again", reply_to=refused.ids[0])
        assert again.kind == "images", again.text
        assert fake.requests[-1].prompt == "add a scarf"  # "try again" repeats the refused ask
        assert "add a hat" in fake.requests[-1].texts()  # it continues from v2
        usage = (await dm.say("/usage")).text or ""
        assert "Today (UTC):" in usage and "you, in this chat: $0.04, 1 model call" in usage
        assert "This month (UTC):" in usage and "$0.12, 3 model calls" in usage


async def test_a_monthly_budget_renews_when_the_month_rolls_over(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-31T23:59:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_chat_monthly_usd="0.05") as bot:
        group = Chat(bot, platform, GROUP, private=False)
        v1 = await group.say("watercolor", photo())
        refused = await group.say("add a hat", reply_to=v1.ids[0], sender=BOB)
        assert "This chat has used its monthly budget of $0.05" in (refused.text or "")
        assert "renews on 1 April at 00:00 UTC" in (refused.text or "")
        assert len(fake.requests) == 1
        clock.set("2026-04-01T00:00:00")
        assert (await group.say("add a hat", reply_to=v1.ids[0], sender=BOB)).kind == "images"


async def test_the_bot_wide_cap_holds_for_operators_too(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-12-15T08:00:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_monthly_usd="0.06",
                      chatbrush_user_daily_usd="0.01", chatbrush_exempt_admins=True,
                      chatbrush_admins="telegram:99") as bot:
        group = Chat(bot, platform, GROUP, private=False)
        refused = await group.say("watercolor", photo())  # Ann: her $0.01 is too little
        assert "daily budget of $0.01" in (refused.text or "")
        assert (await group.say("watercolor", photo(), sender=OPERATOR)).kind == "images"
        capped = await group.say("oil", photo(), sender=OPERATOR)
        assert "The bot has used its budget for this month" in (capped.text or "")
        assert "renews on 1 January" in (capped.text or "")
        assert len(fake.requests) == 1


async def test_requests_per_minute_per_person(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-10T12:00:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_user_per_minute=2) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        for prompt in ("one", "two"):
            assert (await group.say(prompt, photo())).kind == "images"
        refused = await group.say("three", photo())
        assert "faster than allowed here (2 a minute)" in (refused.text or "")
        assert "Try again in about" in (refused.text or "")
        assert len(fake.requests) == 2
        assert (await group.say("bob's one", photo(), sender=BOB)).kind == "images"


async def test_a_request_waits_for_a_free_slot_and_is_told_so(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-10T12:00:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_max_concurrent_calls=1) as bot:
        first = Chat(bot, platform, PRIVATE, private=True)
        second = Chat(bot, platform, ChatKey("telegram", "43"), private=True)
        fake.pause()
        one = await first.send("watercolor", photo())
        await fake.wait_for_requests(1)
        two = await second.send("oil painting", photo())
        await second.channel.wait_for_text("queued")
        assert len(fake.requests) == 1  # the second waits for the first call's slot
        assert Progress.QUEUED in second.channel.progress_log
        assert not any("queued" in t for t in first.channel.texts())
        fake.resume()
        assert one is not None and two is not None
        await bot.intake.wait(one)
        await bot.intake.wait(two)
        assert first.channel.last.kind == second.channel.last.kind == "images"


def test_renewal_dates_are_said_in_each_language() -> None:
    march = datetime(2026, 3, 31, 23, 59, tzinfo=UTC).timestamp()
    assert day_and_month(next_month(march)) == "1 April"
    with speaking("zh_Hans"):
        assert day_and_month(next_month(march)) == "4月1日"
    december = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert str(next_month(december)) == "2027-01-01"


async def test_operators_may_be_exempt_from_personal_limits(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-10T12:00:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_user_per_minute=1,
                      chatbrush_exempt_admins=True, chatbrush_admins="telegram:99") as bot:
        group = Chat(bot, platform, GROUP, private=False)
        for prompt in ("one", "two"):
            assert (await group.say(prompt, photo(), sender=OPERATOR)).kind == "images"
        assert (await group.say("one", photo(), sender=ANN)).kind == "images"
        assert "a minute" in ((await group.say("two", photo(), sender=ANN)).text or "")


async def test_one_person_cannot_take_every_call_slot(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    clock = Clock("2026-03-10T12:00:00")
    async with bot_at(clock, tmp_path, fake, platform, chatbrush_max_concurrent_calls=4,
                      chatbrush_calls_per_chat="") as bot:
        group = Chat(bot, platform, GROUP, private=False)
        fake.pause()
        flood = [await group.send(f"flood {n}", photo()) for n in range(6)]
        await fake.wait_for_requests(2)  # a chat's share of 4 slots is half of them
        dm = Chat(bot, platform, PRIVATE, private=True)
        quiet = await dm.send("watercolor", photo(), sender=BOB)
        await fake.wait_for_requests(3)
        assert fake.requests[-1].prompt == "watercolor"  # Bob is served while Ann waits
        fake.resume()
        for receipt in [*flood, quiet]:
            assert receipt is not None
            await bot.intake.wait(receipt)
        assert dm.channel.last.kind == "images"


async def test_a_flooding_person_is_refused_once_and_the_rest_are_kept_as_refused(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform, store_backend: str
) -> None:
    """The default limit (10 a minute) holds without any setting; over it, one refusal
    for the window, and every refused message stays in the inbox as refused (on SQLite
    and PostgreSQL both)."""
    clock = Clock("2026-03-10T12:00:00")
    defaults = dict.fromkeys(FLOOD_DEFAULTS_LIFTED, "")  # empty: the setting's default
    async with bot_at(clock, tmp_path, fake, platform, **defaults) as bot:
        assert bot.turns.settings.chatbrush_user_per_minute == 10
        dm = Chat(bot, platform, PRIVATE, private=True)
        receipts = [await dm.send(f"flood {n}", photo()) for n in range(25)]
        await asyncio.wait_for(bot.intake.drain(), 60)
        assert len(fake.requests) == 10
        refusals = [t for t in dm.channel.texts() if "faster than allowed" in t]
        assert len(refusals) == 1
        notices = [t for t in dm.channel.texts() if not t.startswith("v")]
        assert len(notices) <= 3  # "you're next" and the refusal, together
        statuses = [(await bot.store.inbox_get(r.entry_id)).status  # type: ignore[union-attr]
                    for r in receipts if r is not None]
        assert statuses.count(InboxStatus.REFUSED) == 15
        assert statuses.count(InboxStatus.DONE) == 10
