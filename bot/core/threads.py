"""The turn tree: what a thread is made of and how to walk it.

A thread holds a tree of turns. Each turn has a parent; the thread's *head* is the turn
the next message continues from. Replying to an older version makes a new child of that
version, so old branches stay stored and reachable. Failed user turns stay in the tree
(nothing a user sent is lost) but are never on a context path.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.core.events import ChatKey
from bot.kit.i18n import N_, _, ngettext

#: what a user turn says once its author had it removed (``/forget``): stored as the turn's
#: only part, so histories, exports and later requests show this instead of their words
REMOVED_BY_AUTHOR = N_("[removed at the author's request]")


class Role(enum.StrEnum):
    """Who a turn is from. A ``StrEnum``: stored as its value, and equal to it."""

    USER = "user"
    MODEL = "model"


class TurnStatus(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # the model call for this user turn failed: kept, out of context
    #: a model answer stored as soon as it arrived but not yet shown in the chat: not a
    #: version yet (the head moves to it only once it is delivered), never paid for again
    UNDELIVERED = "undelivered"


@dataclass(frozen=True)
class ImageRef:
    """An image stored once by content hash; bytes are loaded only when sent."""

    sha256: str
    mime_type: str
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class StoredPart:
    """A part as stored: like :class:`bot.models.base.Part` with the image by reference."""

    text: str | None = None
    image: ImageRef | None = None
    thought: bool = False
    thought_signature: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Turn:
    id: int
    thread_id: int
    parent_id: int | None
    role: Role
    status: TurnStatus
    author_id: str
    author_name: str
    parts: tuple[StoredPart, ...]
    created_at: float
    version: int | None = None  # model turns: 1, 2, 3… in creation order within the thread
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if p.text and not p.thought).strip()

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.parts if p.image is not None and not p.thought]

    @property
    def is_model(self) -> bool:
        return self.role == Role.MODEL


@dataclass(frozen=True)
class Thread:
    id: int
    chat: ChatKey
    external_key: str | None
    head_id: int | None
    created_at: float
    created_by: str
    #: the inbox lane every message of this conversation is ordered in (bot/core/store.py)
    lane: str = ""


def path_to(turns_by_id: dict[int, Turn], turn_id: int | None) -> list[Turn]:
    """Root → ``turn_id`` inclusive, following parents."""
    path: list[Turn] = []
    seen: set[int] = set()
    while turn_id is not None and turn_id not in seen:
        seen.add(turn_id)
        turn = turns_by_id[turn_id]
        path.append(turn)
        turn_id = turn.parent_id
    path.reverse()
    return path


def undo_target(path: Sequence[Turn], steps: int) -> tuple[Turn | None, int]:
    """Where the head goes after undoing ``steps`` versions, and how many were undone.

    The head moves back over model turns (versions). When no earlier version is left, it
    lands on the turn before the first version (the original picture or first prompt);
    ``None`` means there was nothing to undo.
    """
    versions = [i for i, t in enumerate(path) if t.is_model and t.status is TurnStatus.OK]
    if not versions:
        return None, 0
    steps = min(steps, len(versions))
    if steps < len(versions):
        return path[versions[-1 - steps]], steps
    first = versions[0]
    return (path[first - 1] if first > 0 else None), steps


def versions_in(turns: Iterable[Turn]) -> list[Turn]:
    return sorted(
        (t for t in turns if t.is_model and t.status is TurnStatus.OK),
        key=lambda t: (t.version or 0, t.id),
    )


#: versions ``/history`` shows at most, in its list and on its contact sheet (the newest,
#: and the current one): a long thread's full list would run over several messages nobody
#: reads, and each tile of the sheet costs a picture decode (about 20 ms for a 1024² PNG;
#: 300 took six seconds and were stamps). ``/export`` has every version.
HISTORY_VERSIONS = 60

T = TypeVar("T")


def newest_keeping(items: Sequence[T], kept: T | None, limit: int = HISTORY_VERSIONS
                   ) -> list[T]:
    """The last ``limit`` of ``items`` (oldest first), with ``kept`` — one of ``items`` —
    in place of the oldest of them when it is not among them."""
    if len(items) <= limit:
        return list(items)
    newest = list(items[-limit:])
    if kept is not None and all(item is not kept for item in newest):
        newest = [kept, *newest[1:]]
    return newest


def format_history(turns: Sequence[Turn], head_id: int | None, *,
                   removed: Collection[str] = frozenset()) -> str:
    """The versions of a thread as lines a person can read, branches marked; a version
    whose picture is in ``removed`` (SHA-256 of pictures no longer stored) says so."""
    by_id = {t.id: t for t in turns}
    versions = versions_in(turns)
    if not versions:
        return _("No versions yet in this conversation.")
    head_path = {t.id for t in path_to(by_id, head_id)} if head_id in by_id else set()
    lines = [_("Versions in this conversation (reply to an image to continue from it):")]
    if len(versions) > HISTORY_VERSIONS:
        older = len(versions) - HISTORY_VERSIONS
        lines.append(ngettext("({count} older version not listed.)",
                              "({count} older versions not listed.)", older).format(count=older))
        versions = newest_keeping(versions, next((v for v in versions if v.id == head_id), None))
    for version in versions:
        prompt = _prompt_of(by_id, version)
        parent_version = _previous_version(by_id, version)
        origin = (" " + _("(from v{version})").format(version=parent_version.version)
                  if parent_version else "")
        marker = "  " + _("← current") if version.id == head_id else ""
        branch = "" if version.id in head_path else "  " + _("[other branch]")
        gone = ("  " + _("[picture removed]")
                if any(r.sha256 in removed for r in version.images) else "")
        lines.append(f"v{version.version}{origin}: {_short(prompt)}{marker}{branch}{gone}")
    return "\n".join(lines)


def _prompt_of(by_id: dict[int, Turn], model_turn: Turn) -> str:
    parent = by_id.get(model_turn.parent_id) if model_turn.parent_id else None
    if parent is None:
        return _("(no prompt)")
    text = parent.text or (_("(images only)") if parent.images else _("(no prompt)"))
    if text == REMOVED_BY_AUTHOR:
        text = _(REMOVED_BY_AUTHOR)  # stored once, shown in the reader's language
    return f"{text} — {parent.author_name}" if parent.author_name else text


def _previous_version(by_id: dict[int, Turn], turn: Turn) -> Turn | None:
    current = by_id.get(turn.parent_id) if turn.parent_id else None
    while current is not None:
        if current.is_model and current.status is TurnStatus.OK:
            return current
        current = by_id.get(current.parent_id) if current.parent_id else None
    return None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
