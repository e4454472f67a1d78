"""The usage ports: model calls as they were made (for ``/usage``, ``/stats`` and costs)
and the spend reservations that let budgets hold across concurrent calls and processes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.events import ChatKey
from bot.core.failures import FailureKind


@dataclass(frozen=True)
class UsageSummary:
    calls: int = 0
    failed: int = 0
    images: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    #: money spent, in micro-dollars (millionths of a US dollar)
    cost_micros: int = 0


@dataclass(frozen=True)
class ChatCalls:
    """One chat's share of the calls in a period (``/stats``' busiest chats)."""

    platform: str
    chat_id: str
    calls: int
    cost_micros: int


@dataclass(frozen=True)
class CallReport:
    """Model calls since a moment, for operators: how many, how they failed, how long
    they took, what they cost, and where."""

    calls: int = 0
    #: failed calls by failure class, most first; ``None`` counts the failed calls
    #: recorded without a known class
    failures: dict[FailureKind | None, int] = field(default_factory=dict)
    cost_micros: int = 0
    latency_p50_ms: int | None = None
    latency_p95_ms: int | None = None
    busiest: tuple[ChatCalls, ...] = ()


class SpendScope(enum.Enum):
    USER = "user"  # one person's calls on a platform, in every chat
    CHAT = "chat"  # every call made in one chat
    BOT = "bot"  # every call the bot makes


@dataclass(frozen=True)
class SpendLimit:
    """A ceiling on the money spent in a scope since a moment (a day's or month's start).

    ``name`` says which limit it is (``"user_daily"``, …) so a refusal can name it.
    """

    name: str
    scope: SpendScope
    since: float
    limit_micros: int


class UsageStore(Protocol):
    """Model calls, recorded one by one and summed."""

    async def record_usage(self, *, chat: ChatKey, user_id: str, thread_id: int | None,
                           model: str, ok: bool, images: int = 0, prompt_tokens: int = 0,
                           output_tokens: int = 0, request_bytes: int = 0,
                           cost_micros: int = 0, latency_ms: int | None = None,
                           failure: FailureKind | None = None, at: float | None = None,
                           event_id: int | None = None, turn_id: int | None = None) -> None:
        """Record one model call: ``cost_micros`` what it cost, ``latency_ms`` how long
        the call took (retries included; ``None`` if not timed), ``failure`` its failure
        class when not ``ok``, ``at`` when (epoch seconds; default now), ``turn_id`` the
        model turn it produced (see :meth:`turn_costs`).

        With ``event_id``, one spend reservation of that event (the oldest) is deleted in
        the same commit: the estimate is replaced by what the call really cost.
        """
        ...

    async def turn_costs(self, thread_id: int) -> dict[int, int]:
        """What the calls that produced the model turns of ``thread_id`` cost, in micros
        of a dollar, by model turn id (turns recorded without a ``turn_id`` are absent)."""
        ...

    async def usage(self, *, platform: str, chat_id: str | None = None,
                    user_id: str | None = None, since: float | None = None) -> UsageSummary:
        """Totals of the calls on ``platform`` (in ``chat_id``, by ``user_id`` when given)
        recorded at or after ``since`` (epoch seconds; all of them when ``None``)."""
        ...

    async def call_report(self, *, since: float, top: int = 5) -> CallReport:
        """Every call recorded at or after ``since``, on all platforms: the count, the
        failed ones by ``failure`` class (most first, then by class name; a failed call
        without a known class counts under ``None``), the cost, the latency percentiles
        over the calls that have one (nearest rank: the p-th percentile of n sorted values
        is the value at 1-based rank ``ceil(p / 100 * n)``; ``None`` when no call has a
        latency), and the ``top`` chats by number of calls (ties: the higher cost first,
        then platform and chat id ascending)."""
        ...


class SpendStore(Protocol):
    """Money held for calls not yet made, so concurrent calls cannot overrun a budget."""

    async def reserve_spend(self, *, chat: ChatKey, user_id: str, event_id: int | None,
                            amount_micros: int, calls: int, limits: Sequence[SpendLimit],
                            now: float, expires_at: float) -> SpendLimit | None:
        """Reserve ``calls`` model calls of ``amount_micros`` each, unless that would pass
        a limit; check and reservation are one atomic step, so concurrent callers (in any
        process) cannot both pass a limit that has room for only one of them.

        For each limit, in order: the spent amount is the ``cost_micros`` of the calls in
        its scope recorded at or after ``limit.since``, plus the reservations in its scope
        with ``expires_at`` later than ``now``; scopes are the ``user_id`` on
        ``chat.platform`` (every chat), the chat (``chat.platform`` and ``chat.chat_id``;
        the topic is ignored), or every call. If spent + ``amount_micros × calls`` is more
        than ``limit.limit_micros``, that limit is returned and nothing is reserved.
        Otherwise ``calls`` reservations are stored (each of ``amount_micros``, for
        ``event_id``, expiring at ``expires_at``) and ``None`` is returned.
        """
        ...

    async def release_spend(self, event_id: int) -> None:
        """Delete every reservation of ``event_id`` still held (its calls are over)."""
        ...
