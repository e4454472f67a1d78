"""The checks every event passes on its way from the router to a service, as one ordered
chain (like slack-bolt's middleware): each link gets the routed event and the rest of the
chain, and may refuse (raise :class:`~bot.core.errors.UserFacingError`), act around it,
or pass it on. The rules themselves live in :mod:`bot.policy`; this module decides only
when each runs.

The default chain, outermost first:

1. :class:`Reservations` — money the budgets reserved for model calls that never ran is
   given back when the event ends, however it ends. (The reservation itself is made by
   the turn service once it knows how many calls an event needs: one for an edit, one
   per picture for /each.)
2. :class:`InputLimits` — prompts too long, too many files, files that are not pictures:
   refused before anything is downloaded (a resumed event was checked when it was new).
3. :class:`CountMessages` — the messages metric, by kind.
4. :class:`Screening` — blocked terms and patterns: the polite refusal comes before any
   turn, thread or download exists.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from bot.core.config import Settings
from bot.core.store import InboxStatus
from bot.core.work import Work
from bot.flow.commands.spec import Command
from bot.flow.turns import TurnService
from bot.kit import metrics
from bot.policy.input_limits import check_input

log = logging.getLogger(__name__)


class RouteKind(Enum):
    """What the router decided an event is."""

    RESUMED = "resumed"  # an earlier attempt got into it: its stored progress decides
    COMMAND = "command"
    EACH = "each"  # a caption that asks for the same edit on each picture
    EDIT = "edit"  # a plain edit turn


@dataclass(frozen=True)
class Routed:
    """An event with the router's decision about it."""

    work: Work
    kind: RouteKind
    command: Command | None = None
    #: the instruction to screen for blocked terms before anything is kept (None: none)
    prompt: str | None = None

    @property
    def new(self) -> bool:
        """No earlier attempt stored a turn or an answer for it."""
        entry = self.work.entry
        return entry.turn_id is None and entry.answer_turn_id is None


Next = Callable[[Routed], Awaitable[InboxStatus]]


class Middleware(Protocol):
    async def __call__(self, routed: Routed, call_next: Next) -> InboxStatus: ...


async def run_chain(chain: Sequence[Middleware], routed: Routed, endpoint: Next
                    ) -> InboxStatus:
    """``routed`` through every link of ``chain`` in order, then to ``endpoint``."""

    async def step(index: int, current: Routed) -> InboxStatus:
        if index == len(chain):
            return await endpoint(current)
        return await chain[index](current, lambda after: step(index + 1, after))

    return await step(0, routed)


class Reservations:
    """Gives back what the budgets reserved for calls that never ran, once the event
    ends (finished, refused, failed or taken over by another process)."""

    def __init__(self, turns: TurnService) -> None:
        self.turns = turns

    async def __call__(self, routed: Routed, call_next: Next) -> InboxStatus:
        try:
            status = await call_next(routed)
        except Exception:
            await self._release(routed.work)
            raise
        await self._release(routed.work)
        return status

    async def _release(self, work: Work) -> None:
        try:
            await self.turns.release(work)
        except Exception:
            log.exception("could not give back the reservations of message %s",
                          work.event.message_id)


class InputLimits:
    """What can never become a turn, refused before anything is downloaded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, routed: Routed, call_next: Next) -> InboxStatus:
        if routed.new:
            check_input(routed.work.event, self.settings)
        return await call_next(routed)


class CountMessages:
    """The messages metric: commands and edits (a resumed event was counted when new)."""

    async def __call__(self, routed: Routed, call_next: Next) -> InboxStatus:
        if routed.kind is not RouteKind.RESUMED:
            kind = "command" if routed.kind is RouteKind.COMMAND else "edit"
            metrics.MESSAGES.labels(routed.work.event.platform, kind).inc()
        return await call_next(routed)


class Screening:
    """Blocked terms and patterns (the operator's and the chat's) in the instruction."""

    def __init__(self, turns: TurnService) -> None:
        self.turns = turns

    async def __call__(self, routed: Routed, call_next: Next) -> InboxStatus:
        if routed.prompt:
            await self.turns.screen(routed.work, routed.prompt)
        return await call_next(routed)


def default_chain(turns: TurnService) -> tuple[Middleware, ...]:
    """The chain in the order the module docstring gives."""
    return (Reservations(turns), InputLimits(turns.settings), CountMessages(),
            Screening(turns))
