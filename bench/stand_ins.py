"""What the platform benchmarks share: a model that answers at once, inputs, percentiles.

The model is a stand-in for the network call, so what a benchmark measures is the bot's
own work around it (``latency`` simulates a slow model without using the CPU).
"""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from bot.models.base import Blob, GenerateRequest, GenerateResult, Part, Usage


class InstantModel:
    """An ImageModel answering with one fixed PNG, at once or after ``latency`` seconds."""

    name = "instant"
    max_input_images = 3

    def __init__(self, side: int, latency: float = 0.0) -> None:
        out = io.BytesIO()
        Image.new("RGB", (side, side), "teal").save(out, "PNG")
        self.png = out.getvalue()
        self.latency = latency

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return GenerateResult(
            parts=(Part(text="done"), Part(image=Blob("image/png", self.png))),
            usage=Usage(1, 1, 2),
            model_version="instant",
        )

    async def aclose(self) -> None:
        return None


def photo(side: int) -> bytes:
    """A photo-like JPEG (noise compresses like a real picture, unlike a flat colour)."""
    im = Image.effect_noise((side, side), 64).convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
