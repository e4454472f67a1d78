"""Pure translation of Telegram messages: who is addressed, which topic, which image.

Nothing here does I/O, so the rules (what counts as talking to the bot in a group, what a
forum topic is, which file is an image we can take) are testable on recorded updates
alone; :mod:`adapters.telegram` does the downloading and the sending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, MessageEntity
from telegram.constants import ChatType

from bot.events import Sender

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
SUPPORTED_FORMATS = "a photo, or a PNG, JPEG, WebP or HEIC file"


@dataclass(frozen=True)
class BotIdentity:
    id: int
    username: str


@dataclass(frozen=True)
class MediaRef:
    """An image file in a message, not downloaded yet."""

    file_id: str
    size: int | None
    mime_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class MediaProblem:
    """A file we will not download, with the line to tell the user."""

    user_message: str


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
    raw = text.encode("utf-16-le")
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
    raw = text.encode("utf-16-le")
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
    return Sender(str(user.id), user.full_name or user.username or "")


def speaks_for_chat(message: Message) -> bool:
    """An anonymous group admin: the message is sent on behalf of the chat itself."""
    return message.sender_chat is not None and message.sender_chat.id == message.chat.id


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def media_of(message: Message, max_bytes: int) -> MediaRef | MediaProblem | None:
    """The image this message carries, a reason to refuse its file, or ``None``.

    Sizes are checked here, before anything is downloaded.
    """
    limit = min(max_bytes, TELEGRAM_DOWNLOAD_LIMIT)
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        ref = MediaRef(best.file_id, best.file_size, "image/jpeg", None)
    elif message.animation is not None or message.video is not None:
        return MediaProblem(f"I can't edit videos or GIFs. Send {SUPPORTED_FORMATS}.")
    elif message.document is not None:
        doc = message.document
        mime = (doc.mime_type or "").lower()
        name = doc.file_name or ""
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if mime not in IMAGE_MIME_TYPES:
            if mime in ("", "application/octet-stream") and ext in IMAGE_EXTENSIONS:
                mime = IMAGE_EXTENSIONS[ext]
            else:
                kind = ext.upper() or mime or "this kind of"
                return MediaProblem(
                    f"That file ({kind}) isn't an image I can edit. Send {SUPPORTED_FORMATS}."
                )
        ref = MediaRef(doc.file_id, doc.file_size, mime, doc.file_name)
    else:
        return None
    if ref.size is not None and ref.size > limit:
        return too_large(ref.size, limit)
    return ref


def too_large(size: int | None, limit: int) -> MediaProblem:
    what = f"That file is too large ({_megabytes(size)})" if size else "That file is too large"
    return MediaProblem(
        f"{what}; I can take images up to {_megabytes(limit)}. "
        "Send it as a photo or a smaller file."
    )


def unsupported_content(message: Message) -> bool:
    """Stickers, voice, video notes and the like: nothing the model could edit."""
    return any(
        getattr(message, attr, None) is not None
        for attr in (
            "sticker",
            "voice",
            "video_note",
            "audio",
            "location",
            "contact",
            "poll",
            "dice",
            "venue",
            "game",
            "story",
        )
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
