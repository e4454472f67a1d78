"""Mark the spot (issue 22): a picture that is a copy of the version it continues, with
strokes drawn on it, makes a region edit.

Gemini takes no mask, so "change only the hat" repaints a little of everything. People
already say "here" by drawing on a picture with their phone's pen; this module decides
whether what someone sent is such a marked copy (:func:`find_marking`), shows the model
the spot (an outlined copy, and an instruction naming it, in the request), and puts the
answer back into the original inside the spot only (:func:`blend_answer`). The region
engine itself is :mod:`bot.kit.marks`; the turn service calls these.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from PIL import Image

import bot.kit.images as imaging
from bot.core.ports.threads import NewImage, NewRegion, TurnRegion
from bot.core.store import Store
from bot.core.threads import ImageRef, TurnStatus
from bot.kit.i18n import N_, _
from bot.kit.marks import (
    MarkResult,
    NoRegion,
    Region,
    align_answer,
    composite,
    find_marks,
    mask_png,
    outlined_copy,
    region_from_png,
)

log = logging.getLogger(__name__)

#: words that say "only where I drew" (the person meant a region even if none was found)
MARKING_WORDS: Final = re.compile(
    r"\b(only|just)\s+(here|there|this|that|the\s+(marked|circled|drawn))"
    r"|\b(marked|circled|highlighted|scribbled)\b|\bwhere\s+i\s+(drew|marked|circled)"
    r"|只改|这里|那里|圈|标记|画的",
    re.IGNORECASE,
)
#: below this edge agreement the model redrew the whole picture (another composition):
#: blending part of it into the original would make a collage, so its picture is kept
RECOMPOSED_BELOW: Final = 0.35
#: the outlined copy the model is shown: JPEG at this quality (it is seen, not kept as is)
SHOWN_QUALITY: Final = 90

#: why no region was used, for the person (the engine's reasons are plain English for logs)
WHY_NO_REGION: Final = {
    NoRegion.OTHER_PICTURE: N_(
        "(No marked area used: your picture is not a copy of the one it answers, so "
        "I edited the whole picture.)"),
    NoRegion.NOTHING_DRAWN: N_(
        "(No marked area used: I found nothing drawn on your copy, so I edited the whole "
        "picture.)"),
    NoRegion.MARKS_EVERYWHERE: N_(
        "(No marked area used: the marks cover most of the picture, so I edited all of "
        "it.)"),
}
#: for the model, in English whatever the chat's language (the person's words follow it)
REGION_INSTRUCTION: Final = (
    "The first picture is a copy of the second with the area to change tinted magenta and "
    "outlined in yellow. Edit the second picture: change only what is inside that area, as "
    "the instruction below says; keep everything else exactly as it is, and answer with the "
    "whole picture at the same framing, without the tint or the outline.")
ONLY_THE_REGION: Final = N_(
    "(Only the marked area was changed; /original sends the model's whole picture.)")
REDRAWN: Final = N_(
    "(The model redrew the whole picture, so it is shown as the model made it.)")


@dataclass(frozen=True)
class RegionEdit:
    """A region edit: where (``region``, of the picture ``original``), and the copy the
    person sent (kept beside the user's turn, whose pictures are the outlined copy and
    the clean original, in that order: the picture to edit comes last, as in any edit)."""

    region: Region
    original: ImageRef
    marked: NewImage | None = None

    @property
    def mask_png(self) -> bytes:
        return mask_png(self.region)

    def record(self, image: NewImage | None) -> NewRegion:
        """What the store keeps with a turn of this edit, ``image`` beside it."""
        return NewRegion(self.mask_png, self.region.size[0], self.region.size[1], image)


@dataclass(frozen=True)
class Marking:
    """What a picture sent with an instruction turned out to be: a region edit (``edit``
    and the outlined copy to store as the user's picture), or an ordinary edit with
    ``note`` saying why no region was used when the person seemed to mark one."""

    edit: RegionEdit | None = None
    shown: imaging.PreparedImage | None = None
    note: str = ""


def asks_for_region(text: str) -> bool:
    """Whether the words say "only where I drew"."""
    return bool(MARKING_WORDS.search(text))


async def version_picture(store: Store, turn_id: int | None) -> ImageRef | None:
    """The picture a new turn from ``turn_id`` edits: the newest one on its path."""
    if turn_id is None:
        return None
    for turn in reversed(await store.path(turn_id)):
        if turn.status is not TurnStatus.FAILED and turn.images:
            return turn.images[0]
    return None


async def find_marking(store: Store, parent_id: int | None,
                       pictures: Sequence[imaging.PreparedImage], text: str, *,
                       max_side: int) -> Marking | None:
    """A region edit when the one picture sent is a marked copy of the version it
    continues; ``None`` when there was nothing to compare (no single picture, no
    version). A different picture is an ordinary edit, said only when the words asked
    for a region; a copy with nothing usable drawn on it is always said."""
    if len(pictures) != 1 or not text:
        return None
    original = await version_picture(store, parent_id)
    if original is None:
        return None
    sent = pictures[0]
    try:
        original_bytes = await store.image_bytes(original.sha256)
    except LookupError:
        return None  # its picture was removed (retention, /forget): nothing to compare
    try:
        found = await asyncio.to_thread(_find, original_bytes, sent.data, max_side)
    except Exception:  # the region work must never cost the edit itself
        log.exception("looking for marks failed; an ordinary edit instead")
        return Marking()
    if isinstance(found, tuple):
        region, shown = found
        marked = NewImage(sent.data, sent.mime_type, sent.width, sent.height)
        return Marking(RegionEdit(region, original, marked), shown)
    log.info("no region in a picture sent: %s", found.value)
    if found is NoRegion.OTHER_PICTURE and not asks_for_region(text):
        return Marking()
    return Marking(note=_(WHY_NO_REGION[found]))


def _find(original: bytes, marked: bytes, max_side: int
          ) -> tuple[Region, imaging.PreparedImage] | NoRegion:
    with Image.open(io.BytesIO(original)) as clean, Image.open(io.BytesIO(marked)) as copy:
        clean.load()
        copy.load()
        found = find_marks(clean, copy)
        if not isinstance(found, MarkResult):
            return found.reason
        shown = outlined_copy(clean, found.region, max_side=max_side)
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=SHOWN_QUALITY)
    return found.region, imaging.PreparedImage(buffer.getvalue(), "image/jpeg",
                                               shown.width, shown.height)


async def stored_edit(store: Store, turn_id: int, parent_id: int | None
                      ) -> RegionEdit | None:
    """The region edit a stored user turn was ("try again" keeps the same region)."""
    record = (await store.turn_regions([turn_id])).get(turn_id)
    if record is None:
        return None
    original = await version_picture(store, parent_id)
    if original is None:
        return None
    return RegionEdit(region_from_png(record.mask_png, (record.width, record.height)),
                      original, await _kept_picture(store, record))


async def _kept_picture(store: Store, record: TurnRegion) -> NewImage | None:
    ref = record.image
    if ref is None or await store.missing_images([ref.sha256]):
        return None
    return NewImage(await store.image_bytes(ref.sha256), ref.mime_type, ref.width, ref.height)


@dataclass(frozen=True)
class Blended:
    """The answer put into the original: the picture to store as the version (PNG, the
    original's size), or ``None`` when the model redrew the whole picture."""

    picture: NewImage | None
    note: str


def blend_answer(original: bytes, answer: bytes, region: Region) -> Blended:
    """The model's answer inside the region, the original everywhere else (blocking:
    call it in a thread). A blend that fails keeps the model's picture: the answer was
    paid for and must be stored whatever happens here."""
    try:
        return _blended(original, answer, region)
    except Exception:
        log.exception("blending the answer into the original failed; kept as it came")
        return Blended(None, "")


def _blended(original: bytes, answer: bytes, region: Region) -> Blended:
    with Image.open(io.BytesIO(original)) as clean, Image.open(io.BytesIO(answer)) as drawn:
        clean.load()
        drawn.load()
        if region.size != clean.size:  # the stored mask is of the picture it marks
            region = Region(region.mask, clean.size)
        alignment = align_answer(clean, drawn)
        if alignment.score < RECOMPOSED_BELOW:
            log.info("region edit: the answer was recomposed (score %.2f)", alignment.score)
            return Blended(None, _(REDRAWN))
        result = composite(clean, drawn, region, alignment=alignment)
        if result.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
            result = result.convert("RGB")
    buffer = io.BytesIO()
    # lossless, so outside the region the stored version is the original pixel for pixel;
    # the fastest level: on a 1536 px photo level 6 took 290 ms of CPU for 10 % less
    result.save(buffer, format="PNG", compress_level=1)
    return Blended(NewImage(buffer.getvalue(), "image/png", result.width, result.height),
                   _(ONLY_THE_REGION))
