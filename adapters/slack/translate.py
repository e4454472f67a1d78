"""Pure translation of Slack events into the core's events (no I/O, testable on payloads).

Which messages could be for the bot (mentions, DMs, replies in threads it takes part in),
which conversation they belong to (the Slack thread), where answers go, and what the
attached files are — all decided from the event payload alone; :mod:`adapters.slack.adapter`
does the receiving, downloading and sending.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.slack.files import IMAGE_FILETYPES
from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender
from bot.flow.commands import bare_command

PLATFORM = "slack"
#: Message subtypes that are a person's own words or files; everything else (edits,
#: deletions, joins, bot messages, channel topic changes…) is not a request.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
SLASH_COMMAND = "/chatbrush"

_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


@dataclass(frozen=True)
class SlackMessage:
    """A Slack message event we may answer, reduced to what decides how.

    ``kind`` is ``"mention"`` (addressed to the bot in a channel), ``"thread"`` (a reply
    in a thread, ours only if the bot takes part in it) or ``"dm"``.
    """

    kind: str
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None
    files: tuple[Mapping[str, Any], ...]
    is_private: bool

    @property
    def chat(self) -> ChatKey:
        return ChatKey(PLATFORM, self.channel)

    @property
    def thread_hint(self) -> str | None:
        """The conversation key: the Slack thread, or the mention that starts one."""
        if self.kind == "mention":
            return self.thread_ts or self.ts
        return self.thread_ts

    @property
    def reply_thread(self) -> str | None:
        """Where answers go: in-thread in channels; top level for a top-level DM."""
        if self.kind == "dm":
            return self.thread_ts
        return self.thread_ts or self.ts


def clean_text(text: str, bot_user_id: str | None) -> str:
    """The prompt as the user meant it: our mention removed, Slack markup undone, and
    a bare command word (``undo 2``) turned into its ``/undo 2`` form."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = html.unescape(text)  # Slack escapes only &, < and >
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return bare_command(text) or text


def mentions(text: str, bot_user_id: str | None) -> bool:
    if not bot_user_id:
        return False
    return re.search(rf"<@{re.escape(bot_user_id)}[|>]", text) is not None


def translate_event(event: Mapping[str, Any], bot_user_id: str | None) -> SlackMessage | None:
    """Decide whether an ``app_mention``/``message`` event could be for us (pure)."""
    etype = event.get("type")
    if etype not in ("app_mention", "message"):
        return None
    subtype = event.get("subtype")
    if etype == "message" and subtype not in USER_SUBTYPES:
        return None
    user = event.get("user")
    if not isinstance(user, str) or not user or event.get("bot_id") or event.get("hidden"):
        return None
    if bot_user_id and user == bot_user_id:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    raw_text = str(event.get("text") or "")
    thread_ts = event.get("thread_ts")
    thread_ts = thread_ts if isinstance(thread_ts, str) and thread_ts != ts else None
    files = tuple(f for f in event.get("files") or () if isinstance(f, Mapping))
    is_dm = event.get("channel_type") == "im" or (etype == "app_mention" and channel[:1] == "D")
    if is_dm:
        kind = "dm"
    elif etype == "app_mention" or mentions(raw_text, bot_user_id):
        kind = "mention"
    elif thread_ts:
        kind = "thread"
    else:
        return None
    return SlackMessage(
        kind=kind,
        channel=channel,
        ts=ts,
        user=user,
        text=clean_text(raw_text, bot_user_id),
        thread_ts=thread_ts,
        files=files,
        is_private=is_dm,
    )


def file_attachment(file: Mapping[str, Any]) -> Attachment:
    """A Slack file by reference: a picture if Slack's metadata says so (or says too
    little to tell: the bytes decide), a refused file otherwise."""
    mimetype = str(file.get("mimetype") or "").lower()
    filetype = str(file.get("filetype") or "").lower()
    name = file.get("name") or file.get("title")
    url = file.get("url_private_download") or file.get("url_private")
    size = file.get("size")
    unknown = not mimetype and not filetype
    if (mimetype.startswith("image/") and "svg" not in mimetype) or filetype in IMAGE_FILETYPES:
        kind = AttachmentKind.IMAGE
    elif mimetype.startswith("video/") or filetype in ("gif", "mp4", "mov"):
        kind = AttachmentKind.VIDEO
    elif unknown or file.get("mode") in ("tombstone", "hidden_by_limit"):
        kind = AttachmentKind.IMAGE  # fetched for its details; the fetch explains a refusal
    else:
        kind = AttachmentKind.FILE
    return Attachment(
        kind,
        ref=str(file.get("id") or ""),
        url=url if isinstance(url, str) else None,
        mime_type=mimetype or None,
        filename=str(name) if name else None,
        size=size if isinstance(size, int) else None,
    )


def command_prefix(private: bool, bot_user_id: str | None) -> str:
    """Commands are plain words in a DM, and follow a mention in channels."""
    if private:
        return ""
    return f"<@{bot_user_id}> " if bot_user_id else "@Chatbrush "


def to_incoming(msg: SlackMessage, bot_user_id: str | None) -> Incoming:
    """A Slack message as the core's event. A mention inside someone else's thread with no
    file of its own refers to the pictures posted earlier in that thread."""
    looks_back = (msg.kind == "mention" and msg.thread_ts is not None and not msg.files
                  and not msg.text.startswith("/"))
    earlier = (Attachment(AttachmentKind.THREAD_IMAGES,
                          ref=f"{msg.channel}|{msg.thread_ts}|{msg.ts}"),)
    return Incoming(
        chat=msg.chat,
        message_id=msg.ts,
        sender=Sender(msg.user),
        text=msg.text,
        attachments=tuple(file_attachment(f) for f in msg.files),
        is_private=msg.is_private,
        addressed=msg.kind in ("mention", "dm"),
        reply_attachments=earlier if looks_back else (),
        thread_hint=msg.thread_hint,
        command_prefix=command_prefix(msg.is_private, bot_user_id),
        platform_data={"reply_thread": msg.reply_thread or "", "ts": msg.ts},
    )


def slash_to_incoming(command: Mapping[str, Any]) -> Incoming:
    """``/chatbrush usage`` as an event; anything not a command asks for the help text
    (a slash command's answer is private and text-only: no picture can come back)."""
    channel_id = str(command.get("channel_id") or "")
    is_dm = channel_id.startswith("D") or command.get("channel_name") == "directmessage"
    words = str(command.get("text") or "").strip() or "help"
    return Incoming(
        chat=ChatKey(PLATFORM, channel_id),
        message_id=f"slash:{command.get('trigger_id') or ''}",
        sender=Sender(str(command.get("user_id") or ""), str(command.get("user_name") or ""),
                      str(command.get("user_name") or "")),
        text=bare_command(words) or "/help",
        is_private=is_dm,
        addressed=True,
        thread_unknown=True,
        command_prefix=f"{SLASH_COMMAND} ",
        platform_data={"response_url": str(command.get("response_url") or "")},
    )
