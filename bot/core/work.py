"""The work items the flow passes between its steps: one claimed event, where it goes,
and the answer it produced.

They live in the core so every layer can name them (the budgets policy reserves money
per :class:`Work`; the router, the turn service and delivery hand them on) without
importing the flow that makes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.core.chat_settings import ChatSettings
from bot.core.events import Attachment, Channel, Incoming, InputImage
from bot.core.store import InboxEntry
from bot.core.threads import Thread, Turn

#: how a platform downloads one attachment (a Slack file may hold several pictures)
Fetch = Callable[[Attachment], Awaitable[Sequence[InputImage]]]


@dataclass(frozen=True)
class Work:
    """One claimed event (or album) ready for the router.

    ``entry`` records how far earlier attempts got; ``entry_ids`` are every inbox entry
    this work finishes (the items of an album); ``event`` is what the user sent;
    ``owner`` is the process holding the claim (checked again before a model call).
    """

    entry: InboxEntry
    entry_ids: tuple[int, ...]
    event: Incoming
    channel: Channel
    fetch: Fetch
    owner: str
    #: the platform ids of every message the user sent (each item of an album)
    message_ids: tuple[str, ...] = ()
    #: the chat's settings as the event found them; ``None`` when reading them failed
    #: (see bot.flow.choices.ChatChoices.settings_for, which reads them again then)
    chat_settings: ChatSettings | None = None

    @property
    def user_message_ids(self) -> tuple[str, ...]:
        return self.message_ids or (self.event.message_id,)


@dataclass(frozen=True)
class Answer:
    """A model answer, stored undelivered. Its pictures are read back from the store when
    they are sent, so an answer waiting to go out holds none of them."""

    turn: Turn
    note: str = ""  # e.g. that the model's input-image cap left pictures out


@dataclass(frozen=True)
class Target:
    """Where a message goes: a thread, and the turn it continues from.

    ``follow_head`` means "whatever the head is when the turn runs", so queued messages in
    one thread build on each other instead of all on the old head. ``linked`` is the turn
    a reply pointed at (it may hold the pictures of an album).
    """

    thread: Thread
    parent_id: int | None
    follow_head: bool
    carried: tuple[Attachment, ...] = ()
    linked: Turn | None = None
