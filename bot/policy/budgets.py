"""Budgets, rate limits and the cap on concurrent model calls: what stands behind
:meth:`bot.flow.turns.TurnService.admit`, so that running the bot for a group is not an
open wallet.

**Budgets** are US-dollar ceilings per person (on a platform, every chat together), per
chat, and for the whole bot, per UTC day and per calendar month (UTC). Before a call is
made, its price is *estimated* generously (:meth:`bot.models.pricing.PriceTable.estimate`) and
*reserved* in the store together with the check, in one atomic step: two requests
arriving together cannot both pass a limit that has room for one. Recording the call
replaces one reservation by the real cost; what an event did not use is released when it
finishes, and a reservation left by a crash lapses after :data:`RESERVATION_SECONDS`.
The bound: a limit is passed only when real calls cost more than their estimates, by at
most that difference for the calls under way (the estimate of a 1K Gemini 3 Pro picture
is about $0.20 against $0.14 paid), never by a further call.

**Rate limits** count the model calls each person starts per minute (moving window, with
the `limits` library). With ``CHATBRUSH_RATE_LIMIT_STORAGE=memory://`` every process
counts on its own, so N processes allow up to N times the rate; a shared storage
(``async+redis://…``) makes it one count.

**Defaults against floods**: a person may start ``CHATBRUSH_USER_PER_MINUTE`` (10) calls a
minute; over it, they are told once per window (:class:`NoticeBudget`) and the rest of
their messages are kept in the inbox as refused, quietly.

**Concurrency**: ``CHATBRUSH_MAX_CONCURRENT_CALLS`` caps the model calls one process makes
at once; one person has at most ``CHATBRUSH_CALLS_PER_PERSON`` (2) of them and one chat
``CHATBRUSH_CALLS_PER_CHAT`` (4), and neither ever all of them, so others keep being
served. A request that has to wait for a free slot is told so once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from babel.dates import format_skeleton
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from bot.core.chat_settings import ChatSettings
from bot.core.config import Settings, SettingsError
from bot.core.errors import UserFacingError
from bot.core.ports.usage import SpendLimit, SpendScope, SpendStore
from bot.kit import metrics
from bot.kit.formatting import dollars
from bot.kit.i18n import N_, _, current_language
from bot.models.http_policy import humanize_seconds
from bot.models.pricing import PriceTable, to_micros

if TYPE_CHECKING:
    from bot.core.work import Work

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: a flooding person is told at most this many things in any NOTICE_WINDOW seconds, and
#: of them one refusal
NOTICES_PER_WINDOW = 3
NOTICE_WINDOW = 60.0
#: how long a reservation holds money when nobody releases it (a crashed process)
RESERVATION_SECONDS = 3600.0

KEPT = N_("What you sent is kept: reply “try again” after that.")
CALLS_QUEUED = N_("Many pictures are being made right now; yours is queued and starts as "
                  "soon as there is room.")
_MESSAGES = {
    "user_daily": N_("You have used your daily budget of {limit} with this bot. It renews "
                     "at 00:00 UTC, in {wait}."),
    "user_monthly": N_("You have used your monthly budget of {limit} with this bot. It "
                       "renews on {date} at 00:00 UTC."),
    "chat_daily": N_("This chat has used its daily budget of {limit}. It renews at 00:00 "
                     "UTC, in {wait}."),
    "chat_monthly": N_("This chat has used its monthly budget of {limit}. It renews on "
                       "{date} at 00:00 UTC."),
    "bot_monthly": N_("The bot has used its budget for this month. It renews on {date} at "
                      "00:00 UTC."),
}
PER_MINUTE = N_("You are sending requests faster than allowed here ({count} a minute). "
                "Try again in {wait}.")


class LimitReached(UserFacingError):
    """A limit stops this request before any model call; ``reason`` is kept with the
    user's turn (marked failed), so "try again" works once the limit renews."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------- periods (UTC)
def day_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_month(now: float) -> date:
    first = datetime.fromtimestamp(month_start(now), UTC).date()
    return (first + timedelta(days=32)).replace(day=1)


def day_and_month(day: date) -> str:
    """``1 December`` / ``12月1日``, in the language being spoken."""
    locale = "zh_Hans_CN" if current_language() == "zh_Hans" else "en_GB"
    return format_skeleton("dMMMM", day, locale=locale)


# ---------------------------------------------------------------------- the checks
class Budgets:
    """See the module docstring. One per turn service."""

    def __init__(self, store: SpendStore, settings: Settings, prices: PriceTable, *,
                 clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.prices = prices
        self.clock = clock
        uri = settings.chatbrush_rate_limit_storage.strip()
        if "://" in uri and not uri.startswith("async+"):
            uri = "async+" + uri
        try:
            storage = storage_from_string(uri)
        except (ConfigurationError, ValueError) as exc:
            raise SettingsError(f"invalid setting CHATBRUSH_RATE_LIMIT_STORAGE: {exc}"
                                ) from None
        self._limiter = MovingWindowRateLimiter(storage)
        cap = settings.chatbrush_max_concurrent_calls
        self._slots = asyncio.Semaphore(cap) if cap else None
        per_chat = share_of(settings.chatbrush_calls_per_chat, cap)
        self._per_chat = Shares(per_chat)
        per_person = share_of(settings.chatbrush_calls_per_person, cap)
        if per_person is None or (per_chat is not None and per_chat < per_person):
            per_person = per_chat  # a person's share never exceeds their chat's
        self._per_person = Shares(per_person)
        #: what a flooding person is still told (refusals, "queued")
        self.notices = NoticeBudget()
        #: model calls each event has under way or waiting for a global slot
        self._calls_of_event: dict[int, int] = {}
        self._reserved: set[int] = set()
        if settings.chatbrush_monthly_usd is not None:
            metrics.BUDGET.labels("bot_monthly").set(settings.chatbrush_monthly_usd)

    async def admit(self, work: Work, chosen: ChatSettings, *, calls: int,
                    exempt: bool) -> None:
        """Reserve ``calls`` calls against every budget that applies, then count them
        against the per-minute limit; :class:`LimitReached` names the first limit that
        stops them (the one that renews last)."""
        event = work.event
        now = self.clock()
        found = chosen.limits
        spend: list[SpendLimit] = []
        bot_cap = self.settings.chatbrush_monthly_usd
        if bot_cap is not None:
            spend.append(SpendLimit("bot_monthly", SpendScope.BOT, month_start(now),
                                    to_micros(bot_cap)))
        if not exempt:
            for name, scope, since, limit in (
                ("chat_monthly", SpendScope.CHAT, month_start(now), found.chat_monthly),
                ("user_monthly", SpendScope.USER, month_start(now), found.user_monthly),
                ("chat_daily", SpendScope.CHAT, day_start(now), found.chat_daily),
                ("user_daily", SpendScope.USER, day_start(now), found.user_daily),
            ):
                if limit is not None:
                    spend.append(SpendLimit(name, scope, since, limit))
        if spend:
            estimate = self.prices.estimate(chosen.model, image_size=chosen.image_size)
            hit = await self.store.reserve_spend(
                chat=event.chat, user_id=event.sender.id, event_id=work.entry.id,
                amount_micros=estimate, calls=calls, limits=spend, now=now,
                expires_at=now + RESERVATION_SECONDS,
            )
            if hit is not None:
                metrics.LIMIT_REFUSALS.labels(hit.name).inc()
                raise LimitReached(self._spend_message(hit, now), reason=f"limit: {hit.name}")
            self._reserved.add(work.entry.id)
        per_minute = found.user_per_minute
        if per_minute is not None and not exempt:
            item = RateLimitItemPerMinute(per_minute)
            if not await self._limiter.hit(item, event.platform, event.sender.id, cost=calls):
                stats = await self._limiter.get_window_stats(item, event.platform,
                                                             event.sender.id)
                await self.release(work)
                metrics.LIMIT_REFUSALS.labels("per_minute").inc()
                wait = max(1.0, stats.reset_time - time.time())
                message = _(PER_MINUTE).format(count=per_minute, wait=humanize_seconds(wait))
                raise LimitReached(f"{message} {_(KEPT)}", reason="limit: per_minute")

    def _spend_message(self, hit: SpendLimit, now: float) -> str:
        until_midnight = day_start(now) + 86_400 - now
        message = _(_MESSAGES[hit.name]).format(
            limit=dollars(hit.limit_micros), wait=humanize_seconds(until_midnight),
            date=day_and_month(next_month(now)),
        )
        return f"{message} {_(KEPT)}"

    async def release(self, work: Work) -> None:
        """Give back what this event reserved and did not use (its calls are over)."""
        if work.entry.id in self._reserved:
            self._reserved.discard(work.entry.id)
            await self.store.release_spend(work.entry.id)

    @asynccontextmanager
    async def slot(self, work: Work, notify: Callable[[str], Awaitable[None]]
                   ) -> AsyncIterator[None]:
        """Hold one of the process's model-call slots for the block, within the sender's
        and the chat's share of them; ``notify`` tells the user once when the request has
        to wait (if their notices allow: see :class:`NoticeBudget`)."""
        event = work.event
        person = (event.platform, event.sender.id)
        chat = (event.chat.platform, event.chat.chat_id)
        if (self._per_person.full(person) or self._per_chat.full(chat)
                or (self._slots is not None and self._slots.locked())):
            metrics.CALLS_QUEUED.inc()
            # an event whose other calls are under way (/each) is visibly at work already
            if (not self._calls_of_event.get(work.entry.id)
                    and self.notices.may_notify(person, chat)):
                await notify(_(CALLS_QUEUED))
        async with self._per_person.hold(person), self._per_chat.hold(chat):
            self._calls_of_event[work.entry.id] = self._calls_of_event.get(work.entry.id, 0) + 1
            try:
                if self._slots is None:
                    yield
                else:
                    async with self._slots:
                        yield
            finally:
                self._calls_of_event[work.entry.id] -= 1
                if not self._calls_of_event[work.entry.id]:
                    del self._calls_of_event[work.entry.id]


def share_of(cap: int | None, whole: int | None) -> int | None:
    """A chat's or a person's share of ``whole`` slots: at most ``cap``, and when the
    whole is capped, at most half of it (one of two, when there are two or fewer), so
    one chat or one person never holds every slot while others wait."""
    if whole is None:
        return cap
    half = max(1, whole // 2)
    return half if cap is None else min(cap, half)


class Shares:
    """At most ``cap`` holders per key (a person, a chat); keys are dropped when idle."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self._held: dict[Hashable, asyncio.Semaphore] = {}
        self._users: dict[Hashable, int] = {}

    def full(self, key: Hashable) -> bool:
        held = self._held.get(key)
        return held is not None and held.locked()

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        if self.cap is None:
            yield
            return
        held = self._held.setdefault(key, asyncio.Semaphore(self.cap))
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with held:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._held[key]


class NoticeBudget:
    """What a flooding person is told: at most :data:`NOTICES_PER_WINDOW` notices
    ("you're next", "queued", a refusal) in any :data:`NOTICE_WINDOW` seconds, and of
    those at most one refusal; a chat gets at most as many "you're next" and "queued"
    notices, whoever they are for. The rest of the refused messages are kept quietly."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._told: dict[Hashable, deque[float]] = {}
        self._refused: dict[Hashable, float] = {}

    def may_notify(self, person: Hashable, chat: Hashable | None = None) -> bool:
        """Whether ``person`` may be sent one more notice now, and, for a notice that is
        no refusal, ``chat`` too: a crowd's "queued" notices must not spend a group's
        send limit instead of its pictures (counted if so)."""
        now = self.clock()
        keys = [person] if chat is None else [person, ("chat", chat)]
        windows = [self._told.setdefault(key, deque()) for key in keys]
        for told in windows:
            while told and told[0] <= now - NOTICE_WINDOW:
                told.popleft()
        if any(len(told) >= NOTICES_PER_WINDOW for told in windows):
            return False
        for told in windows:
            told.append(now)
        self._forget_old(now)
        return True

    def may_refuse(self, person: Hashable) -> bool:
        """Whether ``person`` is told about this refusal: the first of its window only."""
        now = self.clock()
        if self._refused.get(person, -NOTICE_WINDOW) > now - NOTICE_WINDOW:
            return False
        if not self.may_notify(person):
            return False
        self._refused[person] = now
        return True

    def _forget_old(self, now: float) -> None:
        if len(self._told) < 10_000:
            return
        self._told = {k: v for k, v in self._told.items() if v and v[-1] > now - NOTICE_WINDOW}
        self._refused = {k: t for k, t in self._refused.items() if t > now - NOTICE_WINDOW}
