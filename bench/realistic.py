"""What every benchmark measures against: answers of the size Gemini really sends, and a
fixed reference workload timed in the same process.

A flat stand-in picture of a few kilobytes makes every step that touches an image look
free; Gemini's photographic answers are 1024² PNGs of about 1.3 MB (2.4 MB of base64 in
the JSON body) with a signature of several kilobytes. The reference workload — parse one
such body, base64-decode its picture, hash it — is work any bot must do per answer, so
figures given as multiples of it compare across machines (and across a busy and a quiet
one).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import statistics
import struct
import time
import zlib
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter

SIGNATURE_BYTES = 8192


def build_picture(side: int, grain: float) -> Image.Image:
    """Photo-like content: soft gradients and shapes under sensor grain.

    With ``grain`` 0.05 a 1024² picture encodes to a PNG of about 1.3 MB, the size of a
    photographic Gemini answer; with 0.3 to a JPEG (q95) of about 0.4 MB, as a textured
    photo does. A flat picture would be a few kB and make every check look free.
    """
    sky = Image.linear_gradient("L").resize((side, side))
    base = Image.merge("RGB", (sky.transpose(Image.Transpose.ROTATE_90), sky,
                               Image.new("L", (side, side), 140)))  # fmt: skip
    draw = ImageDraw.Draw(base)
    step = side // 40
    for k in range(60):
        x, y, r = (k * 7919) % side, (k * 104729) % side, step * (1 + k % 5)
        colour = ((k * 53) % 256, (k * 97) % 256, (k * 191) % 256)
        (draw.ellipse if k % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(3))
    noise = Image.merge("RGB", [Image.effect_noise((side, side), 24) for _ in range(3)])
    return Image.blend(base, noise, grain)


@functools.cache
def answer_png(side: int = 1024) -> bytes:
    """A photographic answer picture, about 1.3 MB at 1024²."""
    out = io.BytesIO()
    build_picture(side, 0.05).save(out, format="PNG")
    return out.getvalue()


def signature(size: int = SIGNATURE_BYTES) -> str:
    return base64.b64encode(os.urandom(size)).decode()[:size]


def gemini_body(png: bytes, signature_bytes: int = SIGNATURE_BYTES) -> bytes:
    """A generateContent answer as Gemini sends it: text, then the image and its signature."""
    return json.dumps({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Here is the picture with a red shirt."},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()},
                 "thoughtSignature": signature(signature_bytes)},
            ]},
            "finishReason": "STOP",
        }],
        "usageMetadata": {"promptTokenCount": 1290, "candidatesTokenCount": 1300,
                          "totalTokenCount": 2590},
        "modelVersion": "gemini-2.5-flash-image",
    }).encode()  # fmt: skip


def reference_workload(body: bytes) -> str:
    """Work every answer costs anyway: parse the body, decode the image, hash it."""
    parts = json.loads(body)["candidates"][0]["content"]["parts"]
    image = base64.b64decode(parts[1]["inlineData"]["data"])
    return hashlib.sha256(image).hexdigest()


def median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn`` over ``repeat`` calls, after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def reference_ms(repeat: int = 30) -> tuple[float, float]:
    """The reference workload's median wall and CPU ms on a real-sized answer, here, now."""
    body = gemini_body(answer_png())
    return median_ms(lambda: reference_workload(body), repeat)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class AnswerBodies:
    """Distinct real-sized answer bodies, one per call, without re-encoding 1.7 MB each.

    The store keeps pictures by content hash, so one answer repeated would be stored once
    and flatter the bot. Each body carries the same picture with a different ``tEXt``
    chunk before ``IEND``: only the base64 of the last few bytes is made per call (the
    rest is cut at a multiple of 3 bytes, where base64 can be joined), then the body is
    one join — the work the network would otherwise do.
    """

    def __init__(self, png: bytes | None = None, signature_bytes: int = SIGNATURE_BYTES
                 ) -> None:
        png = png if png is not None else answer_png()
        iend = png.rindex(b"IEND") - 4  # the length field before the chunk type
        split = iend - iend % 3
        self._head = base64.b64encode(png[:split])
        self._middle, self._end = png[split:iend], png[iend:]
        marker = "\x00picture\x00"
        template = gemini_body(b"", signature_bytes).decode()
        template = template.replace('"data": ""', f'"data": "{marker}"')
        before, after = template.split(marker)
        self._before, self._after = before.encode(), after.encode()
        self.png_bytes = len(png)
        self.made = 0

    def next(self) -> bytes:
        self.made += 1
        tail = self._middle + png_chunk(b"tEXt", b"Comment\x00answer %d" % self.made) + self._end
        return b"".join((self._before, self._head, base64.b64encode(tail), self._after))


@functools.cache
def photo_jpeg(width: int = 1280, height: int = 960) -> bytes:
    """A user's photo as Telegram passes it on (its largest photo size is 1280 px): about
    0.3 MB of q87 JPEG with real texture."""
    out = io.BytesIO()
    build_picture(max(width, height), 0.3).resize((width, height)).save(
        out, format="JPEG", quality=87)
    return out.getvalue()
