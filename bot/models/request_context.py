"""The context policy: which part of a thread's path is sent with a new turn.

The whole tree stays in storage, but a request must stay bounded however long a thread
gets, both in bytes (the service refuses large inline requests, and every byte costs
latency) and in input images (2.5 Flash Image works best with at most three). So we send
the recent path, newest first, until a byte budget is spent; older images are replaced by
a short text marker while their turn's text stays. Two kinds of image are always kept:
those of the newest user turn and the image being edited (the newest version on the path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from bot.core.threads import ImageRef, StoredPart, Turn
from bot.models.base import Content, Part, Picture, Role

OMITTED_IMAGE = "[an earlier image, not resent]"
#: stands in for a picture whose bytes were removed (retention, ``/forget``)
REMOVED_IMAGE = "[an earlier image, no longer stored]"


@dataclass(frozen=True)
class ContextPolicy:
    byte_budget: int = 8_000_000
    max_images: int = 3


@dataclass(frozen=True)
class BuiltContext:
    contents: tuple[Content, ...]
    request_bytes: int  # inline payload as sent (base64 images, text, signatures)
    images_sent: int
    newest_images_capped: int  # newest-turn images left out by the image cap


def b64_len(size: int) -> int:
    return 4 * math.ceil(size / 3)


def _text_cost(part: StoredPart) -> int:
    return len((part.text or "").encode()) + len(part.thought_signature or "")


@dataclass(frozen=True)
class _Selection:
    chosen: frozenset[tuple[int, int]]  # (turn id, part index) of every image sent
    kept_turns: tuple[Turn, ...]
    capped: int


def without_removed_images(path: Sequence[Turn], removed: Collection[str]) -> list[Turn]:
    """``path`` with every picture in ``removed`` (SHA-256) replaced by a short marker, as
    a picture the policy leaves out is (its signature goes with it; a draft just goes):
    the model is never sent a picture that is not there."""
    if not removed:
        return list(path)
    out = []
    for turn in path:
        if not any(p.image is not None and p.image.sha256 in removed for p in turn.parts):
            out.append(turn)
            continue
        parts = [p if p.image is None or p.image.sha256 not in removed
                 else StoredPart(text=REMOVED_IMAGE)
                 for p in turn.parts if not (p.thought and p.image is not None
                                             and p.image.sha256 in removed)]
        out.append(replace(turn, parts=tuple(parts)))
    return out


def edited_turn(path: Sequence[Turn]) -> Turn | None:
    """The turn whose pictures the newest message of ``path`` edits: the newest version
    before it, or, before any version, the newest earlier turn with pictures."""
    earlier = path[:-1]
    edited = next((t for t in reversed(earlier) if t.is_model and t.images), None)
    if edited is None:
        edited = next((t for t in reversed(earlier) if t.images), None)
    return edited


def _select(path: Sequence[Turn], policy: ContextPolicy) -> _Selection:
    """Which turns and which images go, within the byte budget and the image cap."""
    newest = path[-1]
    # Images are chosen by position (turn, part), not by hash: an image that recurs
    # (an undo, a model echoing its input) costs again every time it is sent.
    chosen: set[tuple[int, int]] = set()
    budget = policy.byte_budget
    capped = 0

    def take(turn: Turn, index: int) -> bool:
        nonlocal budget
        if (turn.id, index) in chosen:
            return True
        part = turn.parts[index]
        assert part.image is not None
        # A sent image carries its signature (up to hundreds of KB on Gemini 3); a dropped
        # one takes it along, so the signature is charged here, with the bytes.
        cost = b64_len(part.image.size) + _text_cost(part)
        if len(chosen) >= policy.max_images or cost > budget:
            return False
        chosen.add((turn.id, index))
        budget -= cost
        return True

    def image_slots(turn: Turn, *, thoughts: bool = False) -> list[int]:
        return [i for i, p in enumerate(turn.parts)
                if p.image is not None and p.thought == thoughts]

    # 1. what must go: the newest user images, then the image being edited
    for index in image_slots(newest):
        if not take(newest, index):
            capped += 1
    edited = edited_turn(path)
    if edited is not None:
        for index in image_slots(edited):
            take(edited, index)

    # 2. text of turns, newest first, until the budget ends; then optional images
    kept_turns: list[Turn] = []
    for turn in reversed(path):
        cost = sum(_text_cost(p) for p in turn.parts if p.image is None or p.thought)
        cost += sum(len(OMITTED_IMAGE) for p in turn.parts if p.image is not None)
        if cost > budget and kept_turns:
            break
        budget -= cost
        kept_turns.append(turn)
    kept_turns.reverse()
    for turn in reversed(kept_turns):
        for index in image_slots(turn):
            take(turn, index)
    for turn in reversed(kept_turns):  # drafts (thought images) only with room to spare
        for index in image_slots(turn, thoughts=True):
            take(turn, index)

    # Gemini wants the conversation to open with a user turn.
    while kept_turns and kept_turns[0].is_model:
        kept_turns.pop(0)
    return _Selection(frozenset(chosen), tuple(kept_turns), capped)


def build_context(
    path: Sequence[Turn],
    policy: ContextPolicy,
    picture: Callable[[ImageRef], Picture],
) -> BuiltContext:
    """Turn a root→newest path (newest = the new user turn) into request contents;
    ``picture`` gives each image the request keeps (its bytes, or a stored picture the
    model client reads as the request goes out)."""
    if not path:
        return BuiltContext((), 0, 0, 0)
    selection = _select(path, policy)
    chosen, kept_turns, capped = selection.chosen, selection.kept_turns, selection.capped
    contents: list[Content] = []
    sent_bytes = 0
    for turn in kept_turns:
        parts: list[Part] = []
        for index, p in enumerate(turn.parts):
            if p.image is not None and (turn.id, index) not in chosen:
                if not p.thought:
                    parts.append(Part(text=OMITTED_IMAGE))
                    sent_bytes += len(OMITTED_IMAGE)
                continue
            image = picture(p.image) if p.image else None
            parts.append(Part(p.text, image, p.thought, p.thought_signature, p.extra))
            sent_bytes += _text_cost(p) + (b64_len(p.image.size) if p.image else 0)
        if not parts:
            continue
        role: Role = "model" if turn.is_model else "user"
        if contents and contents[-1].role == role:  # e.g. a photo, then its instruction
            contents[-1] = Content(role, contents[-1].parts + tuple(parts))
        else:
            contents.append(Content(role, tuple(parts)))
    images_sent = sum(1 for c in contents for p in c.parts if p.image is not None)
    return BuiltContext(tuple(contents), sent_bytes, images_sent, capped)
