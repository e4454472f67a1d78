"""Rows to the core's value types and back, the same for every SQL backend.

SQLite and PostgreSQL keep the same columns in the same order and the same JSON in
``turns.parts`` and ``inbox.event``, so one set of converters serves both.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import Any

from bot.core.events import (
    Attachment,
    ChatKey,
    Incoming,
    Sender,
    event_from_record,
    event_to_record,
)
from bot.core.failures import FailureKind
from bot.core.ports.inbox import InboxEntry, InboxStatus
from bot.core.threads import ImageRef, Role, StoredPart, Thread, Turn, TurnStatus
from storage.parsed_parts import ParsedParts

THREAD_COLUMNS = ("id", "platform", "chat_id", "topic_id", "external_key", "head_turn_id",
                  "created_at", "created_by", "lane")
TURN_COLUMNS = ("id", "thread_id", "parent_id", "role", "status", "author_id", "author_name",
                "parts", "created_at", "version", "error")
INBOX_COLUMNS = ("id", "platform", "chat_id", "message_id", "lane", "group_id", "event",
                 "status", "owner", "lease_until", "attempts", "turn_id", "answer_turn_id",
                 "call_started", "error", "received_at", "finished_at")
_COL = {name: i for i, name in enumerate(INBOX_COLUMNS)}


def event_json(event: Incoming) -> str:
    """An event as the inbox stores it (ASCII JSON: any text column accepts it)."""
    return json.dumps(event_to_record(event), separators=(",", ":"))


def entry_from_row(row: Sequence[Any], *, status: InboxStatus | None = None,
                   attempts_added: int = 0) -> InboxEntry:
    return InboxEntry(
        id=row[_COL["id"]],
        event=event_from_record(json.loads(row[_COL["event"]])),
        lane=row[_COL["lane"]],
        status=status or InboxStatus(row[_COL["status"]]),
        attempts=row[_COL["attempts"]] + attempts_added,
        received_at=row[_COL["received_at"]],
        turn_id=row[_COL["turn_id"]],
        answer_turn_id=row[_COL["answer_turn_id"]],
        call_started=bool(row[_COL["call_started"]]),
        error=row[_COL["error"]],
    )


def thread_from_row(row: Sequence[Any]) -> Thread:
    (thread_id, platform, chat_id, topic_id, external_key, head, created_at,
     created_by, lane) = row
    return Thread(thread_id, ChatKey(platform, chat_id, topic_id or None), external_key,
                  head, created_at, created_by, lane)


def turn_from_row(row: Sequence[Any], parsed: ParsedParts) -> Turn:
    (turn_id, thread_id, parent_id, role, status, author_id, author_name, parts,
     created_at, version, error) = row
    return Turn(turn_id, thread_id, parent_id, Role(role), TurnStatus(status), author_id,
                author_name, parsed.get(turn_id, parts), created_at, version, error)


def failure_counts(rows: Iterable[Sequence[Any]]) -> dict[FailureKind | None, int]:
    """``(failure, count)`` rows, in their order, by :class:`FailureKind`; the text of a
    class no longer known (and ``'unknown'``) counts under ``None``."""
    counts: dict[FailureKind | None, int] = {}
    for stored, n in rows:
        kind = FailureKind.parse(stored)
        counts[kind] = counts.get(kind, 0) + int(n)
    return counts


def dump_parts(parts: Sequence[StoredPart]) -> str:
    out = []
    for p in parts:
        item: dict[str, Any] = {}
        if p.text is not None:
            item["text"] = p.text
        if p.image is not None:
            item["image"] = {"sha256": p.image.sha256, "mimeType": p.image.mime_type,
                             "width": p.image.width, "height": p.image.height,
                             "size": p.image.size}
        if p.thought:
            item["thought"] = True
        if p.thought_signature is not None:
            item["thoughtSignature"] = p.thought_signature
        if p.extra:
            item["extra"] = p.extra
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def load_parts(raw: str) -> tuple[StoredPart, ...]:
    parts = []
    for item in json.loads(raw):
        image = item.get("image")
        ref = (ImageRef(image["sha256"], image["mimeType"], image["width"], image["height"],
                        image["size"]) if image else None)
        parts.append(StoredPart(item.get("text"), ref, bool(item.get("thought")),
                                item.get("thoughtSignature"), item.get("extra") or {}))
    return tuple(parts)


def forgotten_events(rows: Iterable[tuple[int, str, bool]], user_id: str, *,
                     handling: Collection[int] = ()) -> dict[int, str]:
    """The inbox records ``/forget`` rewrites, as ``{id: new event JSON}``, from ``rows`` of
    (id, event JSON, finished) in its scope.

    The person's finished records, and those being handled for the request itself
    (``handling``: the ``/forget confirm`` message, finished only after the scrub), lose
    their text, files and name; their unfinished ones are work still to do. Everyone's
    records lose the person's pictures by platform handle (a Telegram ``file_id`` in a reply
    to them), which would otherwise fetch the forgotten picture again.
    """
    events = [(entry_id, event_from_record(json.loads(raw)), finished)
              for entry_id, raw, finished in rows]
    theirs = {a.ref or a.url for _, event, _ in events if event.sender.id == user_id
              for a in event.attachments if a.ref or a.url}
    changed: dict[int, str] = {}
    for entry_id, event, finished in events:
        if event.sender.id == user_id:
            if not (finished or entry_id in handling):
                continue
            clean = replace(event, text="", attachments=(), reply_attachments=(),
                            sender=Sender(event.sender.id))
        else:
            clean = replace(event, attachments=_without(event.attachments, theirs),
                            reply_attachments=_without(event.reply_attachments, theirs))
        if clean != event:
            changed[entry_id] = event_json(clean)
    return changed


def _without(attachments: tuple[Attachment, ...], handles: Collection[str | None]
             ) -> tuple[Attachment, ...]:
    return tuple(a for a in attachments if (a.ref or a.url) not in handles)
