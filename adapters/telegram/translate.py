"""Pure translation of Telegram messages: who is addressed, which topic, which image.

Nothing here does I/O, so the rules (what counts as talking to the bot in a group, what a
forum topic is, which file is an image we can take) are testable on recorded updates
alone; :mod:`adapters.telegram.adapter` does the downloading and the sending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, MessageEntity
from telegram.constants import ChatType

from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender

PLATFORM = "telegram"

#: Telegram lets bots download files up to 20 MB through the public Bot API.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: sendPhoto's limits; anything beyond goes out as a document.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_DIMENSION_SUM = 10_000
PHOTO_MAX_RATIO = 20.0
CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096

IMAGE_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/heic", "image/heif"}
)
IMAGE_EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}


@dataclass(frozen=True)
class BotIdentity:
    id: int
    username: str


def is_private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


def topic_id(message: Message) -> str | None:
    """The forum topic, and only that: a non-forum ``message_thread_id`` is a reply chain."""
    if message.is_topic_message and message.message_thread_id is not None:
        return str(message.message_thread_id)
    return None


def reply_target(message: Message) -> Message | None:
    """The message really replied to; in a forum topic every message "replies" to the
    topic's creation notice, which is not a reply anyone meant."""
    target = message.reply_to_message
    if target is None or target.forum_topic_created is not None:
        return None
    if message.is_topic_message and target.message_id == message.message_thread_id:
        return None
    return target


def text_and_entities(message: Message) -> tuple[str, tuple[MessageEntity, ...]]:
    if message.text is not None:
        return message.text, tuple(message.entities)
    return message.caption or "", tuple(message.caption_entities)


def _utf16_slice(text: str, offset: int, length: int) -> str:
    raw = text.encode("utf-16-le", "surrogatepass")
    return raw[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def command_target(message: Message) -> tuple[bool, str | None]:
    """(is a command, the ``@bot`` it names if any)."""
    text, entities = text_and_entities(message)
    for entity in entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            word = _utf16_slice(text, entity.offset, entity.length)
            _, _, target = word.partition("@")
            return True, target or None
    return False, None


def _is_our_mention(text: str, entity: MessageEntity, me: BotIdentity) -> bool:
    """``@ourbot`` (any case) or a text mention of our user id."""
    if entity.type == MessageEntity.MENTION:
        word = _utf16_slice(text, entity.offset, entity.length)
        return word.lower() == "@" + me.username.lower()
    return (
        entity.type == MessageEntity.TEXT_MENTION
        and entity.user is not None
        and entity.user.id == me.id
    )


def _mentions_bot(message: Message, me: BotIdentity) -> bool:
    text, entities = text_and_entities(message)
    return any(_is_our_mention(text, entity, me) for entity in entities)


def is_addressed(message: Message, me: BotIdentity) -> bool:
    """Whether a group message talks to the bot: our command, an @mention in text or
    caption, or a reply to one of our messages. Private messages always are."""
    is_command, target = command_target(message)
    if is_command and target is not None and target.lower() != me.username.lower():
        return False  # /cmd@otherbot
    if is_private(message) or is_command or _mentions_bot(message, me):
        return True
    replied = reply_target(message)
    return replied is not None and replied.from_user is not None and replied.from_user.id == me.id


def prompt_text(message: Message, me: BotIdentity) -> str:
    """The text the model should see: our @mentions removed, whitespace tidied.

    ``"@bot make it red"`` becomes ``"make it red"``; commands stay as typed because the
    engine parses them (``/undo@bot 2``).
    """
    text, entities = text_and_entities(message)
    if not text:
        return ""
    raw = text.encode("utf-16-le", "surrogatepass")
    cuts = [
        (entity.offset * 2, (entity.offset + entity.length) * 2)
        for entity in entities
        if _is_our_mention(text, entity, me)
    ]
    pieces = []
    start = 0
    for begin, end in sorted(cuts):
        pieces.append(raw[start:begin].decode("utf-16-le", errors="replace"))
        start = end
    pieces.append(raw[start:].decode("utf-16-le", errors="replace"))
    joined = " ".join(pieces)
    joined = re.sub(r"^[\s,:;]+", "", joined)
    joined = re.sub(r"[ \t]+([,.!?;:])", r"\1", joined)
    return re.sub(r"[ \t]{2,}", " ", joined).strip()


def sender_of(message: Message) -> Sender:
    """Who sent it; an anonymous admin or a channel is the chat that speaks for them."""
    if message.sender_chat is not None:
        chat = message.sender_chat
        return Sender(str(chat.id), chat.title or chat.username or "")
    user = message.from_user
    if user is None:
        return Sender(str(message.chat.id), message.chat.title or "")
    return Sender(str(user.id), user.full_name or user.username or "", user.username or "",
                  user.language_code or None)


def speaks_for_chat(message: Message) -> bool:
    """An anonymous group admin: the message is sent on behalf of the chat itself."""
    return message.sender_chat is not None and message.sender_chat.id == message.chat.id


_OTHER_CONTENT = ("sticker", "voice", "audio", "location", "contact", "poll", "dice",
                  "venue", "game", "story")


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """What the message carries, by reference (nothing is downloaded here).

    A document counts as a possible picture when its type or name says image, or when
    it says nothing at all (its bytes will decide); a plainly other type is a file.
    """
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return (Attachment(AttachmentKind.IMAGE, ref=best.file_id, mime_type="image/jpeg",
                           size=best.file_size),)
    if message.animation is not None or message.video is not None or message.video_note:
        return (Attachment(AttachmentKind.VIDEO),)
    if message.document is not None:
        doc = message.document
        mime = (doc.mime_type or "").lower()
        name = doc.file_name or ""
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if mime in IMAGE_MIME_TYPES or ext in IMAGE_EXTENSIONS or (
            mime in ("", "application/octet-stream") and not ext
        ):
            kind = AttachmentKind.IMAGE
        elif mime.startswith("video/") or mime == "image/gif":
            kind = AttachmentKind.VIDEO
        else:
            kind = AttachmentKind.FILE
        return (Attachment(kind, ref=doc.file_id, mime_type=doc.mime_type or None,
                           filename=doc.file_name, size=doc.file_size),)
    if any(getattr(message, attr, None) is not None for attr in _OTHER_CONTENT):
        return (Attachment(AttachmentKind.OTHER),)
    return ()


def to_incoming(message: Message, me: BotIdentity) -> Incoming | None:
    """A message as the core's event; ``None`` for a command meant for another bot."""
    is_command, target = command_target(message)
    if is_command and target is not None and target.lower() != me.username.lower():
        return None
    replied = reply_target(message)
    platform_data = {"speaks_for_chat": "1"} if speaks_for_chat(message) else {}
    return Incoming(
        chat=ChatKey(PLATFORM, str(message.chat.id), topic_id(message)),
        message_id=str(message.message_id),
        sender=sender_of(message),
        text=prompt_text(message, me),
        attachments=attachments_of(message),
        is_private=is_private(message),
        addressed=is_addressed(message, me),
        reply_to=str(replied.message_id) if replied is not None else None,
        reply_attachments=attachments_of(replied) if replied is not None else (),
        group_id=str(message.media_group_id) if message.media_group_id else None,
        platform_data=platform_data,
    )


def fits_photo(size: int, width: int, height: int) -> bool:
    """Whether sendPhoto takes it (10 MB, width + height ≤ 10,000, ratio ≤ 20)."""
    if size > PHOTO_MAX_BYTES or width <= 0 or height <= 0:
        return False
    if width + height > PHOTO_MAX_DIMENSION_SUM:
        return False
    return max(width, height) / min(width, height) <= PHOTO_MAX_RATIO


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split long text into messages Telegram accepts, at line breaks where possible."""
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks
