"""Normalised events in, and the ports the core answers through.

Adapters translate a platform update into an :class:`Incoming` and hand it to the
intake (:mod:`bot.flow.intake`), which stores it before the platform is told it arrived. An
``Incoming`` is therefore plain data that survives a restart: attachments are references
the adapter can fetch again (:meth:`Platform.fetch`), and where answers go is rebuilt from
the event itself (:meth:`Platform.channel`). Nothing here knows about any one platform,
which is what lets one core serve them all; what the core needs to know of each beyond
these ports, a platform registers (:mod:`bot.core.platforms`).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bot.kit.image_types import OutputImage


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
    #: the platform handle without "@" (allow-lists may name people by it)
    username: str = ""
    #: the language the person's app is set to, as the platform tags it ("zh-hans",
    #: "en"); None when the event does not say (Slack: asked when processing)
    language: str | None = None

    def qualified(self, platform: str) -> str:
        """The ``platform:id`` form used by ``CHATBRUSH_ADMINS``."""
        return f"{platform}:{self.id}"


class AttachmentKind(enum.Enum):
    """What the platform says a message carries; the core decides what it accepts."""

    IMAGE = "image"  # a photo, or a file that may be a picture (its bytes decide)
    VIDEO = "video"  # videos and GIF animations
    FILE = "file"  # a document the platform plainly labels as something else (PDF…)
    OTHER = "other"  # stickers, voice notes, locations, polls…: nothing to edit
    THREAD_IMAGES = "thread_images"  # the pictures posted earlier in a platform thread


@dataclass(frozen=True)
class Attachment:
    """Something a user sent with a message, by reference: downloaded only when needed.

    ``ref`` and ``url`` are the platform's own handles (a Telegram ``file_id``, a Slack
    file id and its private URL); ``data`` carries the bytes inline where there is no
    platform to fetch them from again (the console).
    """

    kind: AttachmentKind
    ref: str = ""
    url: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    size: int | None = None
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class InputImage:
    """Raw bytes of an image a user sent, exactly as downloaded (not yet validated)."""

    data: bytes
    mime_type: str | None = None
    filename: str | None = None


class InputRefused(Exception):
    """What the user sent cannot be used as input; ``str()`` tells them why.

    Raised by :meth:`Platform.fetch` when a file cannot be downloaded or is not what it
    claimed to be: the core shows the message and stops there.
    """


@dataclass(frozen=True)
class Incoming:
    """One user message, translated by an adapter; plain data, stored before it is acked.

    ``reply_attachments`` are the pictures of the message this one replies to; the core
    fetches them only when that message is not already part of a conversation.
    ``thread_hint`` names a platform thread (Slack ``thread_ts``): messages with the same
    hint belong to the same conversation. ``group_id`` joins the items of one album that
    the platform delivers one by one. ``platform_data`` is what the adapter needs to answer
    this event again after a restart (a Slack ``response_url``, the thread answers go to).
    """

    chat: ChatKey
    message_id: str
    sender: Sender
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    is_private: bool = False
    addressed: bool = True
    reply_to: str | None = None
    reply_attachments: tuple[Attachment, ...] = ()
    thread_hint: str | None = None
    group_id: str | None = None
    #: the platform does not say which conversation this came from (a Slack slash command)
    thread_unknown: bool = False
    #: how users type a command here: "/" (Telegram, console), "<@BOT> " (Slack mentions)
    command_prefix: str = "/"
    platform_data: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def platform(self) -> str:
        return self.chat.platform


class Progress(enum.Enum):
    """What the core tells the user about a request's state, in order."""

    QUEUED = "queued"  # waiting behind another request of the same conversation
    WORKING = "working"  # the model call is under way
    DONE = "done"
    FAILED = "failed"


@runtime_checkable
class Channel(Protocol):
    """The core's only way to talk back, bound to one incoming message.

    Every send returns the platform message ids it created so the flow can link them
    to the turn they show: that link is what makes later replies find their version.
    """

    #: the largest file :meth:`send_file` can deliver here (Telegram bots: 50 MB)
    max_file_bytes: int

    async def send_text(self, text: str) -> list[str]: ...

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None, *,
        as_files: bool = False,
    ) -> list[str]:
        """Send the pictures together (one album, one message with all files) with an
        optional caption. The ids come one per picture, in the order of ``images``, then
        those of any message the caption needed of its own: a caller that sends several
        answers at once links id *i* to the answer of picture *i*. ``as_files`` sends the
        bytes exactly as given (a document rather than a photo Telegram would recompress),
        which is what keeps their Content Credentials."""
        ...

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        """Any file (an export zip), byte for byte; at most :attr:`max_file_bytes`."""
        ...

    async def progress(self, state: Progress) -> None:
        """Show (or clear) a progress signal; must never raise for cosmetic failures."""
        ...

    async def is_admin(self, sender: Sender) -> bool:
        """Whether the sender administers this chat (platform roles only)."""
        ...


class Platform(Protocol):
    """What the intake needs from an adapter to process, or resume, a stored event."""

    name: str

    def channel(self, event: Incoming) -> Channel:
        """Where answers to ``event`` go (same chat, topic and thread, replying to it)."""
        ...

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        """Download what ``attachment`` refers to; :class:`InputRefused` if it can't be."""
        ...

    async def language_of(self, sender: Sender) -> str | None:
        """The sender's app language as the platform tags it, for a platform whose events
        do not carry it (Slack asks ``users.info``); ``None`` when unknown."""
        ...


# --------------------------------------------------------------------------- records
def event_to_record(event: Incoming) -> dict[str, Any]:
    """The JSON form of an event, as the inbox stores it (bytes as base64)."""
    return {
        "chat": [event.chat.platform, event.chat.chat_id, event.chat.topic_id],
        "message_id": event.message_id,
        "sender": [event.sender.id, event.sender.display_name, event.sender.username,
                   event.sender.language],
        "text": event.text,
        "attachments": [_attachment_record(a) for a in event.attachments],
        "is_private": event.is_private,
        "addressed": event.addressed,
        "reply_to": event.reply_to,
        "reply_attachments": [_attachment_record(a) for a in event.reply_attachments],
        "thread_hint": event.thread_hint,
        "group_id": event.group_id,
        "thread_unknown": event.thread_unknown,
        "command_prefix": event.command_prefix,
        "platform_data": dict(event.platform_data),
    }


def event_from_record(record: Mapping[str, Any]) -> Incoming:
    platform, chat_id, topic_id = record["chat"]
    sender = list(record["sender"])
    username = sender[2] if len(sender) > 2 else ""
    language = sender[3] if len(sender) > 3 else None
    return Incoming(
        chat=ChatKey(platform, chat_id, topic_id),
        message_id=record["message_id"],
        sender=Sender(sender[0], sender[1], username, language),
        text=record.get("text", ""),
        attachments=tuple(_attachment_from(a) for a in record.get("attachments", ())),
        is_private=bool(record.get("is_private")),
        addressed=bool(record.get("addressed", True)),
        reply_to=record.get("reply_to"),
        reply_attachments=tuple(
            _attachment_from(a) for a in record.get("reply_attachments", ())
        ),
        thread_hint=record.get("thread_hint"),
        group_id=record.get("group_id"),
        thread_unknown=bool(record.get("thread_unknown")),
        command_prefix=record.get("command_prefix", "/"),
        platform_data=dict(record.get("platform_data") or {}),
    )


def _attachment_record(a: Attachment) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": a.kind.value, "ref": a.ref}
    for name in ("url", "mime_type", "filename", "size"):
        value = getattr(a, name)
        if value is not None:
            out[name] = value
    if a.data is not None:
        out["data"] = base64.b64encode(a.data).decode("ascii")
    return out


def _attachment_from(d: Mapping[str, Any]) -> Attachment:
    data = d.get("data")
    return Attachment(
        kind=AttachmentKind(d["kind"]),
        ref=d.get("ref", ""),
        url=d.get("url"),
        mime_type=d.get("mime_type"),
        filename=d.get("filename"),
        size=d.get("size"),
        data=base64.b64decode(data) if data is not None else None,
    )
