"""The region a person marked, kept as a small mask in the original picture's frame.

The mask lives at working size (a few hundred pixels on the long side) because that is
the precision the strokes were found at; what is done with it at full size goes through
its signed distance field, upsampled only inside the region's bounding box, so the soft
edge is smooth and its outer end is placed to a pixel of the full-size picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from scipy import ndimage

#: the region reaches this far (full-size pixels) past what was marked...
MARGIN_PX: Final = 3.0
#: ...and the blend rises from 0 at that edge to 1 this far inside it
FEATHER_PX: Final = 8.0

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class Region:
    """Where to change a picture of ``size``: ``mask`` (bool, working size) is true inside.

    ``mask`` covers the marked area itself; the full-size region adds :data:`MARGIN_PX`.
    """

    mask: Array
    size: tuple[int, int]

    @property
    def fraction(self) -> float:
        """Share of the picture the mask covers (0–1)."""
        return float(self.mask.mean())

    @property
    def factor(self) -> tuple[float, float]:
        """Full-size pixels per working pixel, across and down."""
        return self.size[0] / self.mask.shape[1], self.size[1] / self.mask.shape[0]

    def patch(self, reach: float = 0.0) -> tuple[Array, tuple[int, int, int, int]] | None:
        """Signed distance to the mask's edge (full-size px) over the part that matters.

        Positive inside, negative outside, measured from pixel centres to the outline
        half a pixel away; computed only over the mask's bounding box widened past the
        margin (the blend is 0 beyond it) and ``reach`` more full-size pixels, so a small
        region in a big picture is cheap. Returns the float32 patch and its box in
        working pixels, or None when the mask is empty.
        """
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        if rows.size == 0:
            return None
        pad = int(np.ceil((MARGIN_PX + reach) / min(self.factor))) + 3
        height, width = self.mask.shape
        box = (
            max(0, int(cols[0]) - pad), max(0, int(rows[0]) - pad),
            min(width, int(cols[-1]) + 1 + pad), min(height, int(rows[-1]) + 1 + pad),
        )
        mask = self.mask[box[1] : box[3], box[0] : box[2]]
        inside = ndimage.distance_transform_edt(mask)
        outside = ndimage.distance_transform_edt(~mask)
        scale = (self.factor[0] + self.factor[1]) / 2
        distance = np.where(mask, inside - 0.5, 0.5 - outside) * scale
        return np.asarray(distance, np.float32), box


def mask_png(region: Region) -> bytes:
    """The mask as a 1-bit PNG at working size (a few kB) to store with the turn."""
    buffer = io.BytesIO()
    Image.fromarray(region.mask).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def region_from_png(data: bytes, size: tuple[int, int]) -> Region:
    """A stored mask back as the region of a picture of ``size`` (try again, redo)."""
    with Image.open(io.BytesIO(data)) as image:
        mask = np.asarray(image.convert("L")) > 127
    return Region(mask=mask, size=size)


def grow_to(mask: Array, fraction: float) -> Array:
    """The mask grown evenly (a disc around every pixel) until it covers ``fraction``.

    A dot or a short tick says "here", but a region of a few pixels leaves the model no
    room to draw anything; the radius is the distance that takes in the needed count.
    """
    needed = int(np.ceil(fraction * mask.size))
    if mask.sum() >= needed or not mask.any():
        return mask
    # a disc of twice the radius still holds the count in a corner (a quarter of it)
    reach = 2 * int(np.ceil(np.sqrt(needed / np.pi))) + 2
    grown = mask.copy()
    part, box = _around(mask, reach)
    if part.size < needed:
        part, box = mask, (slice(None), slice(None))
    distance = ndimage.distance_transform_edt(~part)
    radius = np.partition(distance.ravel(), needed - 1)[needed - 1]
    grown[box] = distance <= radius
    return grown


def close_gaps(mask: Array, radius: float) -> Array:
    """Morphological closing with a disc (via distance transforms: cost is radius-free).

    Fills the gaps between the lines of a scribble and the opening of a loop drawn not
    quite shut, without growing the outline. Works on the marks' surroundings only.
    """
    closed = mask.copy()
    part, box = _around(mask, int(np.ceil(radius)) + 2)
    grown = ndimage.distance_transform_edt(~part) <= radius
    closed[box] |= ndimage.distance_transform_edt(grown) > radius
    return closed


def _around(mask: Array, pad: int) -> tuple[Array, tuple[slice, slice]]:
    """The part of ``mask`` around its true pixels, ``pad`` wider each way (within it)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (
        slice(max(0, int(rows[0]) - pad), min(mask.shape[0], int(rows[-1]) + 1 + pad)),
        slice(max(0, int(cols[0]) - pad), min(mask.shape[1], int(cols[-1]) + 1 + pad)),
    )
    return mask[box], box
