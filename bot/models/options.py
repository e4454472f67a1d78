"""Which aspect ratios and image sizes each image model accepts, and "auto" aspect ratio.

From Google's image-generation guide (ai.google.dev/gemini-api/docs/image-generation):
every Gemini image model takes the ten ratios below; Gemini 3.1 Flash Image adds the
tall and wide 1:4, 4:1, 1:8 and 8:1; only Gemini 3 models take an image size (1K, 2K,
4K), Gemini 2.5 Flash Image always draws at about one megapixel. A model we do not know
is offered the common ratios, and sizes if its name says Gemini 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bot.models.pricing import price_key

COMMON_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTREME_RATIOS = ("1:4", "4:1", "1:8", "8:1")
SIZES = ("1K", "2K", "4K")
#: the aspect-ratio setting that keeps the shape of the picture being edited
AUTO = "auto"


def aspect_ratios(model: str) -> tuple[str, ...]:
    key = price_key(model)
    if key.startswith("gemini-3.1-flash-image"):
        return COMMON_RATIOS + EXTREME_RATIOS
    return COMMON_RATIOS


def image_sizes(model: str) -> tuple[str, ...]:
    """Sizes the model can be asked for; empty when it has one fixed size."""
    key = price_key(model)
    if key.startswith("gemini-2") or key == "demo":
        return ()
    return SIZES if key.startswith("gemini-3") or "image" in key else ()


def nearest_ratio(width: int, height: int, allowed: Sequence[str]) -> str | None:
    """The allowed ratio closest in shape to ``width``×``height`` (compared as
    logarithms, so 2:1 is as far from 1:1 as 1:2 is)."""
    if width <= 0 or height <= 0 or not allowed:
        return None
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(n) for n in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(allowed, key=distance)
