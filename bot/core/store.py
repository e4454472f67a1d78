"""The Store port: everything the core keeps, as one protocol the engine depends on.

The core never imports a storage backend. ``storage/sqlite.py`` (the embedded default)
and ``storage/postgres.py`` implement this protocol and register themselves as entry
points in the ``chatbrush.stores`` group; :mod:`bot.app.runtime` picks one by URL.

Two duties beyond keeping the turn tree are the store's because only it can do them for
every process that shares it: the **inbox** (every event is committed before the
platform is told it arrived, then claimed, processed and finished) and **per-lane
exclusion** (a lane is the ordering key of a conversation: the inbox hands out only the
oldest unfinished event of a lane, so one conversation's turns run one at a time, in
arrival order, whichever process runs them).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.events import ChatKey, Incoming
from bot.core.threads import ImageRef, Thread, Turn, TurnStatus


@dataclass(frozen=True)
class NewImage:
    """Bytes to store with a turn (already normalised by the caller)."""

    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class NewPart:
    text: str | None = None
    image: NewImage | ImageRef | None = None
    thought: bool = False
    thought_signature: str | None = None
    extra: dict[str, Any] | None = None


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
    #: failed calls by failure class (``FailureKind`` values: "rate_limited", …)
    failures: dict[str, int] = field(default_factory=dict)
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



@dataclass(frozen=True)
class AuthoredSummary:
    """What one person sent, counted before ``/forget`` removes it."""

    prompts: int = 0  # their turns that still hold words
    images: int = 0  # pictures in their turns
    conversations: int = 0  # threads those turns are in


@dataclass(frozen=True)
class ForgetReport:
    """What :meth:`Store.forget_author` did."""

    turns: int = 0  # turns whose words and pictures were replaced by the placeholder
    images_erased: int = 0  # pictures no turn refers to any more, erased from storage
    events_scrubbed: int = 0  # finished inbox records emptied of their text and files


@dataclass(frozen=True)
class PurgeReport:
    """What :meth:`Store.purge_idle_images` did."""

    threads: int = 0  # idle threads whose pictures were let go
    images_erased: int = 0  # pictures no turn refers to any more, erased from storage
    bytes_erased: int = 0  # their stored size
    answers_expired: int = 0  # undelivered answers of those threads, now given up
    bytes_reclaimed: int = 0  # by which the database shrank (0 where the backend can't say)


class InboxStatus(enum.Enum):
    RECEIVED = "received"  # stored, not yet taken
    PROCESSING = "processing"  # claimed by a process (under a lease)
    DONE = "done"
    FAILED = "failed"  # handled, but the turn failed: its inputs are kept for "try again"


UNFINISHED = (InboxStatus.RECEIVED, InboxStatus.PROCESSING)


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


class Store(Protocol):
    """Persistent state of the bot; every method is safe to call from the event loop."""

    # -- threads
    async def create_thread(self, chat: ChatKey, *, lane: str, external_key: str | None = None,
                            created_by: str = "") -> Thread: ...

    async def get_thread(self, thread_id: int) -> Thread | None: ...

    async def thread_by_key(self, chat: ChatKey, external_key: str) -> Thread | None: ...

    async def current_thread(self, chat: ChatKey) -> Thread | None: ...

    async def set_current_thread(self, chat: ChatKey, thread_id: int | None) -> None: ...

    async def set_head(self, thread_id: int, turn_id: int | None, *,
                       done_event: int | None = None) -> None:
        """Move the head; with ``done_event``, finish that inbox entry in the same commit."""
        ...

    async def delete_thread(self, thread_id: int) -> None: ...

    # -- turns
    async def add_turn(
        self,
        thread_id: int,
        *,
        parent_id: int | None,
        role: str,
        parts: Sequence[NewPart],
        author_id: str = "",
        author_name: str = "",
        status: TurnStatus = TurnStatus.OK,
        error: str | None = None,
        move_head: bool = True,
        event_id: int | None = None,
    ) -> Turn:
        """Write a turn with its images (and the head) in one commit; with ``event_id``
        the inbox entry records it too, so a resumed event finds it."""
        ...

    async def add_linked_turns(
        self,
        thread_id: int,
        *,
        parent_id: int | None,
        turns: Sequence[Sequence[NewPart]],
        author_id: str,
        author_name: str,
        event_id: int,
    ) -> list[Turn]:
        """Write one user turn per item of ``turns`` (status OK, all children of
        ``parent_id``, the head unchanged) and record them, in this order, as the linked
        turns of inbox entry ``event_id`` (:meth:`inbox_linked_turns`) — in one commit.
        The entry's ``turn_id`` stays unset."""
        ...

    async def mark_failed(self, turn_id: int, error: str) -> None: ...

    async def get_turn(self, turn_id: int) -> Turn | None: ...

    async def turns_of(self, thread_id: int) -> list[Turn]: ...

    async def path(self, turn_id: int | None, *, limit: int | None = None) -> list[Turn]:
        """Root → ``turn_id``; with ``limit``, only its newest ``limit`` turns (oldest
        first), so reading the recent path costs the same however long the thread is."""
        ...

    async def failed_children(self, parent_id: int | None, thread_id: int) -> list[Turn]: ...

    async def undelivered(self, thread_id: int) -> list[Turn]:
        """Model answers of this thread that were stored but never reached the chat."""
        ...

    async def mark_delivered(self, turn: Turn, *, chat: ChatKey, message_ids: Sequence[str],
                             move_head: bool, done_event: int | None = None) -> None:
        """The answer reached the chat: link its messages, make it current, finish the
        event — in one commit, so a crash leaves either all of it or none."""
        ...

    async def image_bytes(self, sha256: str) -> bytes:
        """The stored bytes; ``KeyError`` when they were removed (retention, ``/forget``)."""
        ...

    async def missing_images(self, sha256s: Collection[str]) -> set[str]:
        """Those of ``sha256s`` whose bytes are no longer stored: turns keep the reference
        (and its hash, for the audit trail) after retention removed the picture."""
        ...

    # -- message links
    async def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None: ...

    async def linked_turn(self, chat: ChatKey, message_id: str) -> Turn | None: ...

    # -- usage
    async def record_usage(self, *, chat: ChatKey, user_id: str, thread_id: int | None,
                           model: str, ok: bool, images: int = 0, prompt_tokens: int = 0,
                           output_tokens: int = 0, request_bytes: int = 0,
                           cost_micros: int = 0, latency_ms: int | None = None,
                           failure: str | None = None, at: float | None = None,
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
        failed ones by ``failure`` class (a failed call without a class counts as
        ``"unknown"``), the cost, the latency percentiles over the calls that have one
        (nearest rank: the p-th percentile of n sorted values is the value at 1-based
        rank ``ceil(p / 100 * n)``; ``None`` when no call has a latency), and the ``top``
        chats by number of calls (ties: the higher cost first, then platform and chat id
        ascending)."""
        ...

    # -- budgets
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

    # -- per-chat settings
    async def chat_settings(self, chat: ChatKey) -> dict[str, str]:
        """The settings a chat's admins changed, by name (the topic is ignored: a setting
        applies to the whole chat); settings never changed are absent."""
        ...

    async def set_chat_setting(self, chat: ChatKey, name: str, value: str | None, *,
                               changed_by: str) -> None:
        """Store one setting of the chat (replacing its value); ``None`` removes it, so
        the operator's default applies again."""
        ...

    async def stats(self) -> dict[str, int]: ...

    # -- privacy and retention
    async def authored_summary(self, platform: str, user_id: str, *,
                               chat_id: str | None) -> AuthoredSummary:
        """What :meth:`forget_author` with the same arguments would remove."""
        ...

    async def forget_author(self, platform: str, user_id: str, *, chat_id: str | None
                            ) -> ForgetReport:
        """Remove what ``user_id`` sent: in chat ``chat_id`` (every topic of it), or in
        every chat of ``platform`` when ``chat_id`` is None.

        Each of their user turns keeps its place in the tree (parents, versions and links
        stay, so threads remain navigable) but its parts become one text part,
        :data:`bot.core.threads.REMOVED_BY_AUTHOR`, and its author name is cleared. Pictures
        no turn refers to any more are erased, and so are the text and attachments of
        their *finished* inbox events (unfinished ones are work still to do). Erased means
        gone from the storage files too, not merely unlinked: a backend that keeps deleted
        bytes around (SQLite free pages, its WAL, picture files' blocks) must overwrite or
        truncate them before returning.
        """
        ...

    async def purge_idle_images(self, *, idle_before: float) -> PurgeReport:
        """Let go of the pictures of threads whose newest turn is older than
        ``idle_before`` (epoch seconds), and reclaim the space.

        Turns keep their image references (with the SHA-256) so exports and histories can
        say a picture was removed; a picture another thread still uses stays. Undelivered
        answers of those threads can never be sent any more: they are marked failed
        (error ``"expired"``). Erased as in :meth:`forget_author`.
        """
        ...

    # -- the inbox
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

    async def close(self) -> None: ...
