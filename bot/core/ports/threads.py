"""The threads port: conversations as trees of turns, and the platform messages linked to
their turns (how a reply finds the version it answers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.events import ChatKey
from bot.core.threads import ImageRef, Role, Thread, Turn, TurnStatus


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
class NewRegion:
    """The region a turn was about (issue 22): the mask as a small 1-bit PNG, the size of
    the picture it marks, and one picture kept beside the turn's own: for a user turn the
    marked copy as sent, for a model turn the model's answer before it was blended in."""

    mask_png: bytes
    width: int
    height: int
    image: NewImage | None = None


@dataclass(frozen=True)
class TurnRegion:
    """A stored :class:`NewRegion`; ``image`` by reference."""

    turn_id: int
    mask_png: bytes
    width: int
    height: int
    image: ImageRef | None = None


class ThreadStore(Protocol):
    """Threads, their turns and head, and message links; safe to call from the loop."""

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
        role: Role,
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
        turns of inbox entry ``event_id`` (``InboxStore.inbox_linked_turns``) — in one
        commit. The entry's ``turn_id`` stays unset."""
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

    # -- regions (a marked spot, and the picture kept beside the turn's own)
    async def set_turn_region(self, turn_id: int, region: NewRegion) -> None:
        """Record ``region`` with the turn (its picture stored and kept with the turn,
        removed with it)."""
        ...

    async def turn_regions(self, turn_ids: Sequence[int]) -> dict[int, TurnRegion]:
        """The regions recorded with any of ``turn_ids``, by turn id."""
        ...

    # -- message links
    async def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None: ...

    async def linked_turn(self, chat: ChatKey, message_id: str) -> Turn | None: ...
