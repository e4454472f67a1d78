"""Telling what a person drew on a copy of a picture, and what area they meant.

People mark a spot with the pen of their phone's photo editor and send the copy back:
the strokes are whatever differs strongly from the original once the two are aligned.
Recompression and resizing change every pixel a little and shift edges by a fraction of
a pixel, so a pixel counts as drawn only when its colour lies well outside the range of
the original's colours around it (a 3×3 neighbourhood), and drawn specks too small to be
a stroke are dropped. A closed stroke marks its inside; a scribble or a blot marks the
area it covers (its gaps closed), and a tiny mark is grown to a usable size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from bot.kit.marks.align import (
    Alignment,
    Thumb,
    align_copy,
    correlation,
    place_copy,
    structure,
    work_size,
)
from bot.kit.marks.region import Region, close_gaps, grow_to

#: a colour this far (0–255, on its most changed channel) outside the original's is drawn
#: (recompression and resizing stay under 30 on photo-like pictures)
DRAWN_DIFFERENCE: Final = 40
#: ...and so is one this far over a flat part, when it touches a drawn pixel: a red pen
#: over a red jumper differs by little, but flat parts have no edges to misplace
FAINT_DIFFERENCE: Final = 20
#: a 3×3 neighbourhood whose colours span less than this is flat
FLAT_RANGE: Final = 30
#: below this edge-map correlation the copy is taken to be another picture
SAME_PICTURE_SCORE: Final = 0.35
#: a marked area over this share of the picture is not "a spot" any more
MOST_OF_PICTURE: Final = 0.6
#: a marked area under this share is grown to it
MIN_REGION: Final = 0.005
#: gaps up to twice this share of the working diagonal are closed (scribbles, open loops)
GAP_SHARE: Final = 0.025
#: an open stroke whose convex hull is this many times its area was meant as a loop
HULL_RATIO: Final = 3.0
#: a drawn piece smaller than this share of the picture is noise, not a stroke
SPECK_SHARE: Final = 0.00005

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class MarkResult:
    """What was drawn (``strokes``, working size) and the region it marks."""

    region: Region
    strokes: Array
    alignment: Alignment
    #: True when a stroke closed around an area that was filled in as the region
    enclosed: bool


class NoRegion(StrEnum):
    """Why a copy gave no region. The values are plain English for logs; the flow words
    them for people (in their language) when it says why the edit was an ordinary one."""

    OTHER_PICTURE = "not the same picture"
    NOTHING_DRAWN = "nothing drawn"
    MARKS_EVERYWHERE = "marks cover most of the picture"


@dataclass(frozen=True)
class NotMarked:
    """The copy is no usable marked copy of the original; ``reason`` says why."""

    reason: NoRegion
    #: the edge-map correlation found (below ~0.35: another picture)
    score: float = 0.0


def find_marks(original: Image.Image, marked: Image.Image) -> MarkResult | NotMarked:
    """Align ``marked`` with ``original``, find what was drawn on it and the region meant.

    Returns :class:`NotMarked` when ``marked`` is not a copy of ``original`` (its edges do
    not line up), when nothing was drawn, or when the marks cover most of the picture.
    """
    frame = Thumb.of(original)
    copy_thumb = Thumb.of(marked, _copy_side(original, marked))
    alignment = align_copy(frame, copy_thumb, may_crop=True)
    placed, valid = place_copy(copy_thumb, alignment, frame)
    reference = np.asarray(frame.image)
    copy = np.asarray(placed)
    drawn, faint = _drawn_pixels(reference, copy)
    drawn &= valid
    score = correlation(structure(frame.image), structure(placed), valid & ~drawn)
    alignment = Alignment(
        alignment.scale_x, alignment.scale_y, alignment.origin_x, alignment.origin_y, score
    )
    if score < SAME_PICTURE_SCORE or valid.mean() < 0.5:
        return NotMarked(NoRegion.OTHER_PICTURE, score)
    strokes = _clean_strokes(drawn, faint & valid)
    if not strokes.any():
        return NotMarked(NoRegion.NOTHING_DRAWN, score)
    if strokes.sum() > MOST_OF_PICTURE * valid.sum():
        return NotMarked(NoRegion.MARKS_EVERYWHERE, score)
    covered, enclosed = _covered_area(strokes)
    if covered.mean() > MOST_OF_PICTURE:
        return NotMarked(NoRegion.MARKS_EVERYWHERE, score)
    region = Region(mask=grow_to(covered, MIN_REGION), size=original.size)
    return MarkResult(region=region, strokes=strokes, alignment=alignment, enclosed=enclosed)


def _copy_side(original: Image.Image, marked: Image.Image) -> int:
    """Thumb side for the marked copy that puts it at the original's working scale.

    The copy is at ``share`` of the original's scale (the larger side ratio: a crop only
    makes it smaller), so shrinking it by the frame's own factor over ``share`` lands it
    within a few per cent of the frame, which the alignment then closes exactly.
    """
    share = max(marked.width / original.width, marked.height / original.height)
    frame_per_original = max(work_size(original.size)) / max(original.size)
    return max(16, round(max(marked.size) * frame_per_original / share))


def _drawn_pixels(reference: Array, copy: Array) -> tuple[Array, Array]:
    """Pixels surely drawn, and pixels faintly drawn over flat parts of the original.

    A pixel's colour is compared with the range of the original's colours around it
    (3×3), not with the pixel itself, which forgives the sub-pixel shifts and blur that
    resizing leaves along every edge. (Shifted views with numpy: several times faster
    than a generic rank filter on 8-bit colour.)
    """
    low, high = _neighbourhood_range(reference)
    # 8-bit saturating differences: max(copy, high) - high never wraps
    over = np.maximum(copy, high) - high
    under = low - np.minimum(copy, low)
    beyond = _largest_channel(np.maximum(over, under))
    flat = _largest_channel(high - low) < FLAT_RANGE
    return beyond > DRAWN_DIFFERENCE, (beyond > FAINT_DIFFERENCE) & flat


def _largest_channel(picture: Array) -> Array:
    """Per pixel, the largest of the three channels (``max(axis=2)`` is ~25× slower)."""
    return np.maximum(np.maximum(picture[..., 0], picture[..., 1]), picture[..., 2])


def _neighbourhood_range(picture: Array) -> tuple[Array, Array]:
    """Per-channel minimum and maximum over each pixel's 3×3 neighbourhood (edges clamp)."""
    padded = np.pad(picture, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows_low = np.minimum(np.minimum(padded[:-2], padded[1:-1]), padded[2:])
    rows_high = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    low = np.minimum(np.minimum(rows_low[:, :-2], rows_low[:, 1:-1]), rows_low[:, 2:])
    high = np.maximum(np.maximum(rows_high[:, :-2], rows_high[:, 1:-1]), rows_high[:, 2:])
    return low, high


def _clean_strokes(drawn: Array, faint: Array) -> Array:
    """Whole strokes without JPEG specks.

    A small closing heals breaks; faint pixels count only in a piece that has drawn ones
    (hysteresis, as in edge detection), and not right beside drawn ones, where they are
    the halo JPEG leaves round a strong colour; pieces too small to be a stroke are
    dropped (an area opening, which unlike a plain opening keeps thin pen lines).
    """
    faint = _dilate(_erode(faint)) & faint  # an opening: lone noisy pixels are not a line
    healed = _erode(_dilate(drawn | faint)) | drawn
    labels, count = ndimage.label(healed, structure=np.ones((3, 3), bool))
    if count == 0:
        return healed
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sure = np.bincount(labels[drawn], minlength=count + 1)
    keep = (sizes >= max(6, SPECK_SHARE * drawn.size)) & (sure >= 3)
    keep[0] = False
    halo = _dilate(_dilate(drawn)) & ~_erode(_dilate(drawn)) & ~drawn
    return np.asarray(keep[labels]) & ~halo


def _dilate(mask: Array) -> Array:
    """3×3 dilation with shifted views (the generic morphology is ~10× slower here)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    wide = out.copy()
    out[:, 1:] |= wide[:, :-1]
    out[:, :-1] |= wide[:, 1:]
    return out


def _erode(mask: Array) -> Array:
    """3×3 erosion, the dual of :func:`_dilate` (the frame's edge counts as set)."""
    return ~_dilate(~mask)


def _covered_area(strokes: Array) -> tuple[Array, bool]:
    """The area the strokes mark, and whether a stroke enclosed it.

    Gaps up to twice :data:`GAP_SHARE` of the diagonal are closed (scribble lines, a
    loop not quite shut), and what is then enclosed is filled. A stroke that still
    encloses nothing but bends round an area much larger than itself is a loop whose
    rest did not show (a red pen over a red jumper): its convex hull is taken.
    """
    height, width = strokes.shape
    radius = GAP_SHARE * float(np.hypot(height, width))
    closed = close_gaps(strokes, radius)
    rows = np.flatnonzero(closed.any(axis=1))
    cols = np.flatnonzero(closed.any(axis=0))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    part = closed[box]
    filled_part = ndimage.binary_fill_holes(part)
    enclosed = bool((filled_part & ~part).sum() > 0.5 * strokes[box].sum())
    labels, _ = ndimage.label(part, structure=np.ones((3, 3), bool))
    for index, piece in enumerate(ndimage.find_objects(labels), start=1):
        if (filled_part[piece] & ~part[piece]).any():
            continue  # encloses an area already
        own = labels[piece] == index
        hull = _hull_mask(own)
        if hull is not None and hull.sum() > HULL_RATIO * own.sum():
            filled_part[piece] |= hull
            enclosed = True
    filled = closed.copy()
    filled[box] = filled_part
    return filled, enclosed


def _hull_mask(piece: Array) -> Array | None:
    """The filled convex hull of a piece's pixels (None for a straight or tiny piece)."""
    ys, xs = np.nonzero(piece)
    if ys.size < 8:
        return None
    points = np.column_stack([xs, ys]).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # all on one line
        return None
    outline = [(float(x) + 0.5, float(y) + 0.5) for x, y in points[hull.vertices]]
    page = Image.new("1", (piece.shape[1], piece.shape[0]), 0)
    ImageDraw.Draw(page).polygon(outline, fill=1, outline=1)
    return np.asarray(page) | piece
