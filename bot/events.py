"""Normalised messages in, and the port the engine answers through.

Adapters translate a platform update into an :class:`Incoming` and hand it to the
engine together with a :class:`Channel` bound to that message's chat, topic and thread.
Nothing here knows about Telegram or Slack, which is what lets one engine serve both.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatKey:
    """Where a conversation lives: one chat, or one forum topic of a chat.

    ``topic_id`` is a Telegram forum topic (never a mere reply-chain id); Slack threads
    are not topics, they arrive as :attr:`Incoming.thread_hint`.
    """

    platform: str
    chat_id: str
    topic_id: str | None = None

    def __str__(self) -> str:
        topic = f"/{self.topic_id}" if self.topic_id else ""
        return f"{self.platform}:{self.chat_id}{topic}"


@dataclass(frozen=True)
class Sender:
    id: str
    display_name: str = ""

    def qualified(self, platform: str) -> str:
        """The ``platform:id`` form used by ``CHATBRUSH_ADMINS``."""
        return f"{platform}:{self.id}"


@dataclass(frozen=True)
class InputImage:
    """Raw bytes of an image a user sent, exactly as downloaded (not yet validated)."""

    data: bytes
    mime_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class OutputImage:
    """An image the bot sends back; ``mime_type`` is what the bytes really are."""

    data: bytes
    mime_type: str = "image/png"
    width: int = 0
    height: int = 0

    @property
    def extension(self) -> str:
        return {
            "image/png": "png",
            "image/jpeg": "jpg",
            "image/webp": "webp",
            "image/gif": "gif",
        }.get(self.mime_type, "bin")


class InputRefused(Exception):
    """An adapter cannot turn what the user sent into input; ``str()`` tells them why.

    Raised, for instance, by a ``reply_to_images`` loader when the replied-to file is too
    large or not an image: the engine shows the message and stops there.
    """


ReplyImagesLoader = Callable[[], Awaitable[Sequence[InputImage]]]


@dataclass(frozen=True)
class Incoming:
    """One user message, already filtered and translated by an adapter.

    ``reply_to_images`` fetches the images of the replied-to message; the engine calls it
    only when that message is not already linked to a turn, so nothing is downloaded twice.
    ``thread_hint`` names a platform thread (Slack ``thread_ts``): messages with the same
    hint belong to the same conversation.
    """

    chat: ChatKey
    message_id: str
    sender: Sender
    text: str = ""
    images: tuple[InputImage, ...] = ()
    is_private: bool = False
    addressed: bool = True
    reply_to: str | None = None
    reply_to_images: ReplyImagesLoader | None = field(default=None, compare=False)
    thread_hint: str | None = None
    #: how users type a command here: "/" (Telegram, console), "<@BOT> " (Slack mentions)
    command_prefix: str = "/"

    @property
    def platform(self) -> str:
        return self.chat.platform


class Progress(enum.Enum):
    """What the engine tells the user about a request's state, in order."""

    QUEUED = "queued"  # waiting behind another request of the same thread
    WORKING = "working"  # the model call is under way
    DONE = "done"
    FAILED = "failed"


@runtime_checkable
class Channel(Protocol):
    """The engine's only way to talk back, bound to one incoming message.

    Every send returns the platform message ids it created so the engine can link them
    to the turn they show: that link is what makes later replies find their version.
    """

    async def send_text(self, text: str) -> list[str]: ...

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None
    ) -> list[str]: ...

    async def progress(self, state: Progress) -> None:
        """Show (or clear) a progress signal; must never raise for cosmetic failures."""
        ...

    async def is_admin(self, sender: Sender) -> bool:
        """Whether the sender administers this chat (platform roles only)."""
        ...
