"""What the benchmarks share: a model that does the client's real work, inputs, percentiles.

The model is the production :class:`~bot.models.gemini.GeminiModel` — request encoding,
the retry policy, reading the answer — whose HTTP client has no socket: an
``httpx.MockTransport`` answers each call with a real-sized Gemini body (a distinct
photographic 1024² PNG of about 1.3 MB with a multi-kB signature, :mod:`bench.realistic`),
at once or after ``latency`` seconds (a non-blocking sleep, like a real call). So a
benchmark measures everything the bot does per answer except the kernel's socket copies,
and no more.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence

import httpx
from PIL import Image

from bench.realistic import SIGNATURE_BYTES, AnswerBodies
from bot.models.base import Content, GenerateRequest
from bot.models.gemini import GeminiModel
from bot.models.http_policy import CallPolicy

#: the model the stand-in answers as (its per-model image cap applies: 3 inputs)
MODEL = "gemini-2.5-flash-image"


class StandInGemini(GeminiModel):
    """``GeminiModel`` over a transport that answers like Gemini without a network."""

    def __init__(self, latency: float = 0.0, *, model: str = MODEL,
                 signature_bytes: int = SIGNATURE_BYTES) -> None:
        self.latency = latency
        self.answers = AnswerBodies(signature_bytes=signature_bytes)
        #: images in each request, in call order
        self.input_images: list[int] = []
        #: bytes of each request body
        self.request_bytes: list[int] = []
        self._client = httpx.AsyncClient(transport=_Wire(self))
        super().__init__(api_key="bench-key", model=model, base_url="http://127.0.0.1:9",
                         client=self._client, policy=CallPolicy(jitter=0))

    @property
    def calls(self) -> int:
        return self.answers.made

    def build_body(self, request: GenerateRequest) -> dict[str, object]:
        self.input_images.append(
            sum(1 for c in request.contents for p in c.parts if p.image is not None))
        return super().build_body(request)

    async def aclose(self) -> None:
        await super().aclose()
        await self._client.aclose()


def count_images(contents: Sequence[Content]) -> int:
    return sum(1 for c in contents for p in c.parts if p.image is not None)


class _Wire(httpx.AsyncBaseTransport):
    """Where the socket would be: takes the request body chunk by chunk and lets go of
    each (``httpx.MockTransport`` would hold the whole body until the answer), waits
    ``latency``, answers with the next real-sized body."""

    def __init__(self, model: StandInGemini) -> None:
        self.model = model

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        size = 0
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            size += len(chunk)
        self.model.request_bytes.append(size)
        if self.model.latency:
            await asyncio.sleep(self.model.latency)
        return httpx.Response(200, stream=_Answer(self.model.answers),
                              headers={"content-type": "application/json"})


class _Answer(httpx.AsyncByteStream):
    """An answer body made when it is read, as bytes arriving on a socket are: until
    then, a waiting answer costs the bot nothing."""

    def __init__(self, answers: AnswerBodies) -> None:
        self.answers = answers

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = self.answers.next()
        for start in range(0, len(body), 1 << 16):
            yield body[start:start + (1 << 16)]


def photo(side: int) -> bytes:
    """A noisy square JPEG (noise compresses like a real picture, unlike a flat colour);
    :func:`bench.realistic.photo_jpeg` is a user's photo at Telegram's size."""
    im = Image.effect_noise((side, side), 64).convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
