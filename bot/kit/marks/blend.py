"""Putting the model's answer into the original inside the region only, and showing it.

Gemini takes no mask and repaints a little of everything; keeping the original outside
the region is what stops a picture drifting over many turns. The answer is aligned back
on structure (it may come at its own size, a few pixels off and recoloured), and only the
region's bounding box is resampled at full size, so a small region in a 12 MP picture
costs little more than the copy of the original that the result is.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image

from bot.kit.marks.align import (
    WORK_SIDE,
    Alignment,
    Thumb,
    align_copy,
    correlation,
    place_copy,
    structure,
)
from bot.kit.marks.region import FEATHER_PX, MARGIN_PX, Region

#: modes a soft blend makes sense in; other modes (palette, 1-bit, 32-bit) get a hard edge
_BLENDABLE: Final = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})
#: the tint and outline drawn on the copy the model is shown
_TINT: Final = (255, 0, 200)
_OUTLINE: Final = (255, 230, 0)

Array = np.ndarray


def align_answer(original: Image.Image, answer: Image.Image) -> Alignment:
    """Where the model's whole-picture answer sits on the original (scale per side, shift).

    ``score`` is how well the edges then agree (about 0.9 for an answer that changed one
    part, near 0 for a picture with another composition: the caller may prefer the
    model's whole picture then).
    """
    side = WORK_SIDE // 2  # what the alignment works at: no need to shrink twice
    frame, copy = Thumb.of(original, side), Thumb.of(answer, side)
    found = align_copy(frame, copy, may_crop=False, halve=False)
    placed, valid = place_copy(copy, found, frame)
    score = correlation(structure(frame.image), structure(placed), valid)
    return Alignment(found.scale_x, found.scale_y, found.origin_x, found.origin_y, score)


def composite(
    original: Image.Image, answer: Image.Image, region: Region,
    *, alignment: Alignment | None = None,
) -> Image.Image:
    """The original with the answer blended in inside ``region`` only.

    The result has the original's size and mode; every pixel outside the region (the
    marked area grown by :data:`MARGIN_PX`) is the original's, unchanged. Inside, the
    answer's pixels are used as the model drew them, blended over a soft edge of
    :data:`FEATHER_PX`. ``alignment`` is :func:`align_answer`'s, when already known.
    """
    if region.size != original.size:
        raise ValueError(f"region is for {region.size}, picture is {original.size}")
    result = original.copy()
    patch = region.patch()
    if patch is None:
        return result
    distance, work_box = patch
    box, weights = _blend_weights(region, distance, work_box, soft=original.mode in _BLENDABLE)
    if box[2] <= box[0] or box[3] <= box[1]:
        return result
    if alignment is None:
        alignment = align_answer(original, answer)
    answer_part = _answer_patch(answer, alignment, box, original.mode, result)
    result.paste(answer_part, box[:2], weights)
    return result


def _blend_weights(
    region: Region, distance: Array, work_box: tuple[int, int, int, int], *, soft: bool
) -> tuple[tuple[int, int, int, int], Image.Image]:
    """The full-size box the blend touches, and the weights (0–255) over it.

    The signed distance is upsampled (bilinear, over that box only) and mapped linearly:
    0 at the margin's edge, 255 a feather's width inside. The conversion to 8 bits clips,
    so everything past the margin is exactly 0.
    """
    box, field = _upsampled(distance, work_box, region.mask.shape, region.size)
    gain = 255.0 / FEATHER_PX
    weights = field.point(lambda v: v * gain + MARGIN_PX * gain).convert("L")
    if not soft:
        weights = weights.point(lambda v: 255 if v >= 128 else 0)
    return box, weights


def _upsampled(
    distance: Array, work_box: tuple[int, int, int, int], frame: tuple[int, ...],
    size: tuple[int, int],
) -> tuple[tuple[int, int, int, int], Image.Image]:
    """A patch of the working frame (shape ``frame``) resampled to a picture of ``size``.

    Returns the picture's whole pixels that lie inside the patch, and the patch's values
    there (bilinear, mode F): only that box is ever computed at the picture's size.
    """
    fx, fy = size[0] / frame[1], size[1] / frame[0]
    box = (
        int(np.ceil(work_box[0] * fx)), int(np.ceil(work_box[1] * fy)),
        int(np.floor(work_box[2] * fx)), int(np.floor(work_box[3] * fy)),
    )
    source = (
        box[0] / fx - work_box[0], box[1] / fy - work_box[1],
        box[2] / fx - work_box[0], box[3] / fy - work_box[1],
    )
    target = (max(1, box[2] - box[0]), max(1, box[3] - box[1]))
    field = Image.fromarray(distance, mode="F")
    return box, field.resize(target, Image.Resampling.BILINEAR, box=source)


def _answer_patch(
    answer: Image.Image, alignment: Alignment, box: tuple[int, int, int, int], mode: str,
    original: Image.Image,
) -> Image.Image:
    """The answer's pixels over ``box`` of the original, resampled from the answer once."""
    left = alignment.scale_x * (box[0] - alignment.origin_x)
    top = alignment.scale_y * (box[1] - alignment.origin_y)
    right = alignment.scale_x * (box[2] - alignment.origin_x)
    bottom = alignment.scale_y * (box[3] - alignment.origin_y)
    # a shifted answer lacks a sliver at one edge: take the nearest pixels it has
    source = (
        min(max(left, 0.0), answer.width - 1.0),
        min(max(top, 0.0), answer.height - 1.0),
        max(min(right, float(answer.width)), 1.0),
        max(min(bottom, float(answer.height)), 1.0),
    )
    size = (box[2] - box[0], box[3] - box[1])
    if answer.mode not in _BLENDABLE:
        answer = answer.convert("RGBA" if "A" in answer.getbands() else "RGB")
    patch = answer.resize(size, Image.Resampling.BICUBIC, box=source)
    return _to_mode(patch, mode, original)


def _to_mode(patch: Image.Image, mode: str, original: Image.Image) -> Image.Image:
    """The patch in the original's mode (a palette picture keeps its own palette)."""
    if patch.mode == mode:
        return patch
    if mode == "P":
        return patch.convert("RGB").quantize(palette=original, dither=Image.Dither.NONE)
    if mode in ("RGBA", "LA") and "A" not in patch.getbands():
        patch = patch.convert(mode[:-1])
        patch.putalpha(255)
        return patch
    return patch.convert(mode)


def outlined_copy(
    original: Image.Image, region: Region, *, max_side: int | None = None
) -> Image.Image:
    """A whole RGB copy of the original with the region tinted and outlined, for the model.

    The model sees the clean original and this copy in one message, so it can tell what
    "here" means without losing the rest of the picture (it is never shown a crop).
    ``max_side`` shrinks the copy to the size it will be sent at first; only the
    region's box is drawn on.
    """
    shown = original.convert("RGB")
    if max_side and max(shown.size) > max_side:
        k = max_side / max(shown.size)
        size = (max(1, round(shown.width * k)), max(1, round(shown.height * k)))
        shown = shown.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    per_full = shown.width / region.size[0]
    width = max(2.0, 0.004 * max(shown.size))  # the outline's half-width, shown pixels
    patch = region.patch(reach=width / per_full)
    if patch is None:
        return shown
    distance, work_box = patch
    box, field = _upsampled(distance, work_box, region.mask.shape, shown.size)
    edge = (np.asarray(field) + MARGIN_PX) * per_full  # from the region's edge, shown px
    tint = Image.fromarray(np.where(edge > 0, 80, 0).astype(np.uint8))
    ring = Image.fromarray((np.abs(edge) <= width).astype(np.uint8) * 255)
    part = shown.crop(box)
    part = Image.composite(Image.new("RGB", part.size, _TINT), part, tint)
    part = Image.composite(Image.new("RGB", part.size, _OUTLINE), part, ring)
    shown.paste(part, box[:2])
    return shown
