"""Finding where one copy of a picture sits on another, by structure rather than colour.

A marked copy comes back from a phone recompressed, resized by the platform (Telegram
halves a 12 MP photo) and sometimes cropped a little; a model's answer comes back at its
own size, a few pixels off, and recoloured. Colour is what both change, so alignment
compares edge maps (the gradient magnitude of the grey picture), which survive all of it.

Everything works on small copies (:data:`WORK_SIDE` pixels on the long side): a shift or a
scale is found to a fraction of a work pixel by phase correlation, which is all the mask
needs, and a 12 MP picture is never touched at full size here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

#: long side of the working copies: the strokes and the region are found at this size
WORK_SIDE: Final = 640
#: long side of the first, coarse pass that picks the scale of a cropped copy
COARSE_SIDE: Final = 200
#: how much a marked copy may have been cropped, per side in total (6 %)
MAX_CROP: Final = 0.06
_COARSE_STEP: Final = 0.005

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

    ``reducing_gap=1`` lets Pillow box-reduce by the whole factor first (a 12 MP photo in
    a few ms) before the final bilinear step; only the small copy is converted to RGB.
    """
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
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
    if weight.sum() < 16:
        return 0.0
    x = a[weight] - a[weight].mean()
    y = b[weight] - b[weight].mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


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
    most, so nothing aliases); the outermost pixel of the footprint is dropped because
    resampling blends it with the black around.
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
    footprint = Image.new("L", copy.size, 255).transform(
        frame.size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST
    )
    valid = np.asarray(footprint) > 0
    inner = valid.copy()
    inner[1:, :] &= valid[:-1, :]
    inner[:-1, :] &= valid[1:, :]
    inner[:, 1:] &= valid[:, :-1]
    inner[:, :-1] &= valid[:, 1:]
    return placed, inner


def align_copy(original: Thumb, copy: Thumb, *, may_crop: bool) -> Alignment:
    """Where ``copy`` (resized, perhaps cropped, perhaps recoloured) sits on ``original``.

    The scale comes from the sizes: a crop makes the copy relatively smaller, so the
    larger of the width and height ratios is the least the scale can be. When the copy
    may be cropped on every side, a coarse pass tries scales up to :data:`MAX_CROP` above
    it and keeps the sharpest correlation peak, and the working-size pass refines it.
    ``score`` is left at 0 (the caller scores after removing what was drawn).
    """
    ratio_x = copy.full_size[0] / original.full_size[0]
    ratio_y = copy.full_size[1] / original.full_size[1]
    reference = structure(original.image)
    if not may_crop:
        return _measure_shift(reference, original, copy, (ratio_x, ratio_y), limit=0.06)[0]
    least = max(ratio_x, ratio_y)
    candidates = [least * (1 + k * _COARSE_STEP) for k in range(int(MAX_CROP / _COARSE_STEP) + 1)]
    best = max(candidates, key=_coarse_peaks(original, copy))
    if best == least:  # not cropped on both axes: the sizes give the scale exactly
        return _measure_shift(reference, original, copy, (best, best), limit=None)[0]
    found = _measure_shift(reference, original, copy, (best, best), limit=None)[0]
    return _refine_scale(reference, original, copy, found)


def _refine_scale(
    reference: Array, original: Thumb, copy: Thumb, rough: Alignment
) -> Alignment:
    """Correct a scale that is slightly off from how far apart the copy's halves land.

    With the scale off by a fraction e, the copy's content drifts by e pixels per pixel:
    the left and right halves (top and bottom) each correlate to their own shift, and the
    difference over their distance is e, to a small fraction of a per cent.
    """
    fx, fy = original.factor
    size = (
        max(2, min(original.size[0], round(copy.full_size[0] / (rough.scale_x * fx)))),
        max(2, min(original.size[1], round(copy.full_size[1] / (rough.scale_y * fy)))),
    )
    moving = structure(copy.image.resize(size, Image.Resampling.BILINEAR))
    oy, ox = rough.origin_y / fy, rough.origin_x / fx
    drift = []
    for axis in (1, 0):
        half = moving.shape[axis] // 2
        first, second = np.split(moving, [half], axis=axis)
        shifts = []
        for part, start in ((first, 0), (second, half)):
            at = (round(oy), round(ox + start)) if axis == 1 else (round(oy + start), round(ox))
            target = _window(reference, at, part.shape)
            dy, dx, _ = phase_correlate(target, part, limit=(12, 12))
            shifts.append(dx if axis == 1 else dy)
        drift.append((shifts[1] - shifts[0]) / half)
    scale = 1 / (1 + (drift[0] + drift[1]) / 2)
    scaled = (rough.scale_x * scale, rough.scale_y * scale)
    return _measure_shift(reference, original, copy, scaled, limit=None)[0]


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


def _coarse_peaks(original: Thumb, copy: Thumb) -> Callable[[float], float]:
    """How well the edges match at a candidate scale (copy px per original px), coarsely."""
    coarse = work_size(original.size, COARSE_SIDE)
    reference = structure(original.image.resize(coarse, Image.Resampling.BILINEAR))
    per_coarse = original.full_size[0] / coarse[0]
    small = copy.image.resize(work_size(copy.size, COARSE_SIDE * 3 // 2), Image.Resampling.BOX)

    def match(scale: float) -> float:
        size = (
            max(1, min(coarse[0], round(copy.full_size[0] / (scale * per_coarse)))),
            max(1, min(coarse[1], round(copy.full_size[1] / (scale * per_coarse)))),
        )
        moving = structure(small.resize(size, Image.Resampling.BILINEAR))
        dy, dx, _ = phase_correlate(reference, moving)
        return overlap_correlation(reference, moving, round(dy), round(dx))

    return match


def overlap_correlation(reference: Array, moving: Array, dy: int, dx: int) -> float:
    """Correlation of ``moving`` with the part of ``reference`` it lands on when shifted."""
    height, width = moving.shape
    top, left = max(0, dy), max(0, dx)
    bottom = min(reference.shape[0], dy + height)
    right = min(reference.shape[1], dx + width)
    if bottom - top < 8 or right - left < 8:
        return -1.0
    under = reference[top:bottom, left:right]
    over = moving[top - dy : bottom - dy, left - dx : right - dx]
    return correlation(under, over, np.ones(under.shape, bool))


def _measure_shift(
    reference: Array, original: Thumb, copy: Thumb, scale: tuple[float, float],
    *, limit: float | None,
) -> tuple[Alignment, float]:
    """The origin for a given scale by phase correlation at working size; and its match."""
    fx, fy = original.factor
    size = (
        max(1, min(original.size[0], round(copy.full_size[0] / (scale[0] * fx)))),
        max(1, min(original.size[1], round(copy.full_size[1] / (scale[1] * fy)))),
    )
    moving = structure(copy.image.resize(size, Image.Resampling.BILINEAR))
    bound = None if limit is None else (limit * size[1] + 1, limit * size[0] + 1)
    dy, dx, _ = phase_correlate(reference, moving, limit=bound)
    # the size was rounded to whole pixels: the scale actually compared is this one
    found = Alignment(
        scale_x=copy.full_size[0] / (size[0] * fx),
        scale_y=copy.full_size[1] / (size[1] * fy),
        origin_x=dx * fx,
        origin_y=dy * fy,
    )
    return found, overlap_correlation(reference, moving, round(dy), round(dx))
