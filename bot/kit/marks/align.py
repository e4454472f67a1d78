"""Finding where one copy of a picture sits on another, by structure rather than colour.

A marked copy comes back from a phone recompressed, resized by the platform (Telegram
halves a 12 MP photo) and sometimes cropped a little; a model's answer comes back at its
own size, a few pixels off, and recoloured. Colour is what both change, so alignment
compares edge maps (the gradient magnitude of the grey picture), which survive all of it.

Everything works on small copies (:data:`WORK_SIDE` pixels on the long side, and half
that for the correlations): a shift or a scale is found to a fraction of a pixel by phase
correlation, which is all the mask needs, and a 12 MP picture is only sampled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

#: long side of the working copies: the strokes and the region are found at this size
WORK_SIDE: Final = 512
#: how much a marked copy may have been cropped, per side in total (6 %)
MAX_CROP: Final = 0.06
BILINEAR: Final = Image.Resampling.BILINEAR
#: pictures this many times the thumb's size are sampled rather than read whole
SAMPLED_ABOVE: Final = 3

Array = np.ndarray


@dataclass(frozen=True)
class Alignment:
    """Where a copy sits on the original: ``copy_xy = scale * (original_xy - origin)``.

    Coordinates are in pixels of the full-size pictures; ``score`` is the normalised
    correlation of the two edge maps where they overlap (1 = the same structure).
    """

    scale_x: float
    scale_y: float
    origin_x: float
    origin_y: float
    score: float = 0.0


def work_size(size: tuple[int, int], side: int = WORK_SIDE) -> tuple[int, int]:
    """The working size of a picture of ``size``: long side ``side``, never enlarged."""
    width, height = size
    k = min(1.0, side / max(width, height))
    return max(1, round(width * k)), max(1, round(height * k))


def shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An antialiased RGB copy at ``size``, cheap on big pictures.

    ``reducing_gap=1`` lets Pillow box-reduce by the whole factor first before the final
    bilinear step. A picture many times the size (a 12 MP photo for a 512 px thumb) is
    averaged over a regular 2×2 sample of each cell rather than all ~40 of its pixels:
    reading all 36 MB cost as much as the rest of the region work, and the strokes are
    found against the neighbourhood's range, which absorbs the sampling's grain.
    Only the small copy is converted to RGB.
    """
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    if image.width >= SAMPLED_ABOVE * size[0] and image.height >= SAMPLED_ABOVE * size[1]:
        # a big photo: average a 2×2 sample of every cell instead of all of its pixels
        image = image.resize((size[0] * 2, size[1] * 2), Image.Resampling.NEAREST).reduce(2)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    return image.convert("RGB") if image.mode != "RGB" else image


def structure(rgb: Image.Image | Array) -> Array:
    """Edge map: gradient magnitude of the grey picture, zero on its outer frame."""
    grey = np.asarray(rgb.convert("L") if isinstance(rgb, Image.Image) else rgb, np.float32)
    edges = np.zeros_like(grey)
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    edges[1:-1, 1:-1] = np.abs(gx) + np.abs(gy)
    return edges


def phase_correlate(
    reference: Array, moving: Array, *, limit: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    """Shift ``(dy, dx)`` with ``reference[p + d] ≈ moving[p]``, and the peak's height.

    ``moving`` may be smaller (it is zero-padded). Only the spectrum's phase is compared,
    so a change of brightness or contrast does not matter; ``limit`` bounds the shift
    searched (in pixels each way) so that a repeated texture cannot win from afar.
    """
    height, width = reference.shape
    padded = np.zeros_like(reference)
    padded[: moving.shape[0], : moving.shape[1]] = moving - moving.mean()
    spectrum = np.fft.rfft2(reference - reference.mean()) * np.conj(np.fft.rfft2(padded))
    spectrum /= np.abs(spectrum) + 1e-6 * np.abs(spectrum).max() + 1e-12
    surface = np.fft.irfft2(spectrum, s=reference.shape)
    if limit is not None:
        ys = np.fft.fftfreq(height, 1 / height)
        xs = np.fft.fftfreq(width, 1 / width)
        outside = (np.abs(ys)[:, None] > limit[0]) | (np.abs(xs)[None, :] > limit[1])
        surface[outside] = -np.inf
    peak_y, peak_x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    dy = peak_y + _subpixel(surface[(peak_y + np.arange(-1, 2)) % height, peak_x])
    dx = peak_x + _subpixel(surface[peak_y, (peak_x + np.arange(-1, 2)) % width])
    dy = dy - height if dy > height / 2 else dy
    dx = dx - width if dx > width / 2 else dx
    return float(dy), float(dx), float(surface[peak_y, peak_x])


def _subpixel(three: Array) -> float:
    """Offset of a parabola's top through three neighbouring samples (−0.5…0.5)."""
    left, centre, right = (float(v) for v in three)
    if not np.isfinite(left + right):
        return 0.0
    curvature = left - 2 * centre + right
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def correlation(a: Array, b: Array, weight: Array) -> float:
    """Normalised correlation of two maps over the pixels where ``weight`` is true."""
    w = weight.astype(np.float32)
    count = float(w.sum())
    if count < 16:
        return 0.0
    mean_a, mean_b = float((a * w).sum()) / count, float((b * w).sum()) / count
    da, db = (a - mean_a) * w, (b - mean_b) * w
    denominator = float(np.sqrt(float((da * da).sum()) * float((db * db).sum())))
    return float((da * db).sum()) / denominator if denominator > 0 else 0.0


@dataclass(frozen=True, eq=False)
class Thumb:
    """A picture's working-size RGB copy and the size of the picture it stands for.

    Each full-size picture is shrunk once; alignment, stroke finding and scoring all work
    on thumbs, which is what keeps a 12 MP photo cheap.
    """

    image: Image.Image
    full_size: tuple[int, int]

    @classmethod
    def of(cls, picture: Image.Image, side: int = WORK_SIDE) -> Thumb:
        return cls(shrink(picture, work_size(picture.size, side)), picture.size)

    def half(self) -> Thumb:
        """The same at half the size: alignment needs no more (its peaks are sub-pixel)."""
        return Thumb(self.image.reduce(2), self.full_size)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    @property
    def factor(self) -> tuple[float, float]:
        """Full-size pixels per thumb pixel, across and down."""
        return self.full_size[0] / self.image.width, self.full_size[1] / self.image.height


def place_copy(copy: Thumb, alignment: Alignment, frame: Thumb) -> tuple[Image.Image, Array]:
    """The copy resampled into ``frame``'s pixels, and where it has pixels there.

    One affine resample of the copy's thumb (the two differ in scale by a few per cent at
    most, so nothing aliases); where it has pixels is a rectangle less its outermost
    pixel, which resampling blends with the black around.
    """
    fx, fy = frame.factor
    cx, cy = copy.factor
    # frame pixel -> original pixel -> copy pixel -> copy-thumb pixel
    data = (
        alignment.scale_x * fx / cx, 0.0, -alignment.scale_x * alignment.origin_x / cx,
        0.0, alignment.scale_y * fy / cy, -alignment.scale_y * alignment.origin_y / cy,
    )
    placed = copy.image.transform(
        frame.size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
    )
    # the copy covers a rectangle of the frame; its outermost pixel blends with black
    left, top = alignment.origin_x / fx, alignment.origin_y / fy
    right = left + copy.full_size[0] / (alignment.scale_x * fx)
    bottom = top + copy.full_size[1] / (alignment.scale_y * fy)
    xs = np.arange(frame.size[0]) + 0.5
    ys = np.arange(frame.size[1]) + 0.5
    across = (xs >= left + 1) & (xs <= right - 1)
    down = (ys >= top + 1) & (ys <= bottom - 1)
    return placed, down[:, None] & across[None, :]


def align_copy(
    original: Thumb, copy: Thumb, *, may_crop: bool, halve: bool = True
) -> Alignment:
    """Where ``copy`` (resized, perhaps cropped, perhaps recoloured) sits on ``original``.

    The scale comes from the sizes: a crop makes the copy relatively smaller, so the
    larger of the width and height ratios is the least the scale can be, and exact when
    one side was left whole. A copy cropped on every side is a little larger than that:
    the drift between its corners measures by how much (:func:`_scale_error`), and the
    shift is measured again. All of it at half the thumbs' size (unless ``halve`` is
    false: the caller made them small). ``score`` is left at 0
    (the caller scores after removing what was drawn).
    """
    if halve:
        original, copy = original.half(), copy.half()
    ratio_x = copy.full_size[0] / original.full_size[0]
    ratio_y = copy.full_size[1] / original.full_size[1]
    reference = structure(original.image)
    if not may_crop:
        return _measure_shift(reference, original, copy, (ratio_x, ratio_y), limit=0.06)
    least = max(ratio_x, ratio_y)
    found = _measure_shift(reference, original, copy, (least, least), limit=None)
    for _ in range(2):
        error = _scale_error(reference, original, copy, found)
        if abs(error) < 0.0005 or abs(error) > 2 * MAX_CROP:
            break
        scale = (found.scale_x / (1 + error), found.scale_y / (1 + error))
        found = _measure_shift(reference, original, copy, scale, limit=None)
    return found


def _scale_error(reference: Array, original: Thumb, copy: Thumb, rough: Alignment) -> float:
    """By how much (a fraction) a scale is off, from how far apart the copy's corners land.

    With the scale off by a fraction e, the copy's content drifts by e pixels per pixel:
    each corner tile (0.4 of each side) correlates to its own shift, and the difference
    between opposite corners over their distance is e, to a few hundredths of a per cent.
    Four small correlations cost less than one of the whole picture.
    """
    fx, fy = original.factor
    moving = structure(copy.image.resize(_compared_size(original, copy, rough), BILINEAR))
    height, width = moving.shape
    tile_h, tile_w = max(8, int(height * 0.4)), max(8, int(width * 0.4))
    reach = (MAX_CROP * height + 2, MAX_CROP * width + 2)
    shifts = {}
    for top in (0, height - tile_h):
        for left in (0, width - tile_w):
            at = (round(rough.origin_y / fy) + top, round(rough.origin_x / fx) + left)
            tile = moving[top : top + tile_h, left : left + tile_w]
            dy, dx, _ = phase_correlate(_window(reference, at, tile.shape), tile, limit=reach)
            shifts[top > 0, left > 0] = (dy, dx)
    across = [shifts[row, True][1] - shifts[row, False][1] for row in (False, True)]
    down = [shifts[True, col][0] - shifts[False, col][0] for col in (False, True)]
    return float(np.mean(across) / (width - tile_w) + np.mean(down) / (height - tile_h)) / 2


def _compared_size(
    original: Thumb, copy: Thumb, alignment: Alignment | tuple[float, float]
) -> tuple[int, int]:
    """The copy's size in the original's thumb pixels at a scale (whole pixels)."""
    fx, fy = original.factor
    sx, sy = (
        (alignment.scale_x, alignment.scale_y) if isinstance(alignment, Alignment) else alignment
    )
    return (
        max(2, min(original.size[0], round(copy.full_size[0] / (sx * fx)))),
        max(2, min(original.size[1], round(copy.full_size[1] / (sy * fy)))),
    )


def _window(reference: Array, at: tuple[int, int], shape: tuple[int, ...]) -> Array:
    """The part of ``reference`` of ``shape`` from ``at``, zero where it runs off the edge."""
    out = np.zeros(shape[:2], reference.dtype)
    top, left = max(0, at[0]), max(0, at[1])
    bottom = min(reference.shape[0], at[0] + shape[0])
    right = min(reference.shape[1], at[1] + shape[1])
    if bottom > top and right > left:
        out[top - at[0] : bottom - at[0], left - at[1] : right - at[1]] = reference[
            top:bottom, left:right
        ]
    return out


def _measure_shift(
    reference: Array, original: Thumb, copy: Thumb, scale: tuple[float, float],
    *, limit: float | None,
) -> Alignment:
    """The origin for a given scale, by phase correlation at working size."""
    fx, fy = original.factor
    size = _compared_size(original, copy, scale)
    moving = structure(copy.image.resize(size, BILINEAR))
    bound = None if limit is None else (limit * size[1] + 1, limit * size[0] + 1)
    dy, dx, _ = phase_correlate(reference, moving, limit=bound)
    # the size was rounded to whole pixels: the scale actually compared is this one
    return Alignment(
        scale_x=copy.full_size[0] / (size[0] * fx),
        scale_y=copy.full_size[1] / (size[1] * fy),
        origin_x=dx * fx,
        origin_y=dy * fy,
    )
