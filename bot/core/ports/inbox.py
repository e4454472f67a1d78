"""The inbox port: every event committed before the platform is told it arrived, then
claimed, processed and finished.

It is the store's duty because only the store can do it for every process that shares it,
and so is **per-lane exclusion**: a lane is the ordering key of a conversation, and the
inbox hands out only the oldest unfinished event of a lane, so one conversation's turns run
one at a time, in arrival order, whichever process runs them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.core.events import Incoming


class InboxStatus(enum.Enum):
    RECEIVED = "received"  # stored, not yet taken
    PROCESSING = "processing"  # claimed by a process (under a lease)
    DONE = "done"
    FAILED = "failed"  # handled, but the turn failed: its inputs are kept for "try again"
    REFUSED = "refused"  # a limit stopped it before any model call (kept, not lost)


@dataclass(frozen=True)
class InboxEntry:
    """One stored event and how far its handling got.

    ``turn_id`` is the user turn it created, ``answer_turn_id`` the model answer stored
    for it, ``call_started`` whether a model call was begun: together they let a resumed
    event continue where it stopped without paying for a second model call.
    """

    id: int
    event: Incoming
    lane: str
    status: InboxStatus
    attempts: int
    received_at: float
    turn_id: int | None = None
    answer_turn_id: int | None = None
    call_started: bool = False
    error: str | None = None


@dataclass(frozen=True)
class LinkedTurn:
    """One of the user turns an event made for a linked edit (one per picture), and
    whether its model call was begun: a resumed event runs only the calls never begun."""

    turn_id: int
    call_started: bool = False


class InboxStore(Protocol):
    async def inbox_add(self, event: Incoming, *, lane: str) -> tuple[InboxEntry, bool]:
        """Commit ``event`` unless its message is already stored; ``True`` if it is new."""
        ...

    async def inbox_claim(self, owner: str, *, limit: int, lease_seconds: float,
                          platforms: Sequence[str]) -> list[InboxEntry]:
        """Take up to ``limit`` events of ``platforms``, oldest first, each the oldest
        unfinished one of its lane and not under a live lease. A stored record that can no
        longer be read is marked failed instead of blocking its lane."""
        ...

    async def inbox_renew(self, owner: str, *, lease_seconds: float) -> None: ...

    async def inbox_release(self, owner: str, entry_ids: Sequence[int] | None = None) -> None:
        """Give back claims of ``owner`` that are still unfinished: all of them (shutdown),
        or ``entry_ids`` (an event whose handling broke off: it is tried again)."""
        ...

    async def inbox_join_group(self, entry: InboxEntry, owner: str, *,
                               lease_seconds: float) -> list[InboxEntry]:
        """Claim the other unfinished events of ``entry``'s album (same lane and group),
        oldest first, ``entry`` included."""
        ...

    async def inbox_group_latest(self, lane: str, group_id: str) -> float:
        """When the newest item of an album arrived (to wait for the rest)."""
        ...

    async def inbox_mark_call_started(self, entry_id: int, *, owner: str) -> bool:
        """Record that the model call of ``entry_id`` begins, if ``owner`` still holds the
        entry. ``False``: its lease ran out and another process took it over; that one
        decides whether to call, so the model is never called twice for one message."""
        ...

    async def inbox_linked_turns(self, entry_id: int) -> list[LinkedTurn]:
        """The linked turns recorded for ``entry_id`` in the order they were given;
        empty when it recorded none. Forgotten when the entry is pruned."""
        ...

    async def inbox_mark_linked_call_started(self, entry_id: int, turn_id: int, *,
                                             owner: str) -> bool:
        """Record that the model call of linked turn ``turn_id`` of ``entry_id`` begins,
        if ``owner`` still holds the entry (as :meth:`inbox_mark_call_started`)."""
        ...

    async def inbox_finish(self, entry_ids: Sequence[int], *, status: InboxStatus,
                           error: str | None = None) -> None: ...

    async def inbox_waiting_before(self, lane: str, entry_id: int) -> int:
        """How many unfinished events of ``lane`` arrived before ``entry_id``."""
        ...

    async def inbox_backlog(self) -> int:
        """How many events are unfinished (received or processing), in every lane: what a
        start-up resumes. One count over the index of unfinished events: its cost follows
        the backlog, not the size of the store."""
        ...

    async def inbox_oldest_stuck(self) -> float | None:
        """When (epoch seconds) the oldest event that nobody works on arrived: received,
        in a lane with nothing processing (an event queued behind a running turn is
        waiting, not stuck). ``None`` when there is none. What readiness checks."""
        ...

    async def inbox_lane_active(self, lane: str) -> bool: ...

    async def inbox_get(self, entry_id: int) -> InboxEntry | None: ...

    async def inbox_prune(self, *, older_than: float) -> int:
        """Forget finished events received before ``older_than`` (epoch seconds)."""
        ...

    async def wait_for_inbox(self, seconds: float) -> None:
        """Return when another process may have stored or finished an event since the last
        call (PostgreSQL: LISTEN/NOTIFY), else after ``seconds``. A store one process owns
        (SQLite) just waits: that process's own news reaches its intake directly."""
        ...
