"""A fake Gemini REST server on 127.0.0.1 that speaks the real wire format.

It answers ``POST {prefix}/v1beta/models/{model}:generateContent`` the way the live
service does — camelCase answers with ``thoughtSignature`` on the first text part and on
image parts, a ``thought: true`` interim image first for Gemini 3 models, usage metadata,
Google-shaped error bodies — and it is as strict as the service where our client could
go wrong: the key must be in ``x-goog-api-key``, unknown request fields are refused, and
for ``gemini-3*`` models a model-turn image without its signature, or with a signature
that was altered or truncated, gets the service's HTTP 400.

Signatures are self-verifying (random bytes + an HMAC under a secret shared by every
instance), so a signature stays valid across fake restarts but any truncation shows.

Usage::

    async with FakeGemini() as fake:          # in the test's event loop
        model = GeminiModel(api_key=fake.api_key, base_url=fake.base_url, ...)

    with FakeGemini.in_thread() as fake:      # for subprocess / sync tests
        ...

Script the next answers with :meth:`FakeGemini.enqueue` and the ``enqueue_*`` helpers;
when the queue is empty the default answer is an edit of the last input image (inverted)
or a generated picture.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from PIL import Image, ImageOps

#: the service's inline request limit
MAX_REQUEST_BYTES = 20 * 1024 * 1024
#: shared by all instances, like the service's own signing key
SIGNATURE_SECRET = b"chatbrush-fake-gemini-signing-key"
#: values Google documents as accepted in place of a real signature
DUMMY_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)
DEFAULT_MODELS = frozenset(
    {
        "gemini-2.5-flash-image",
        "gemini-2.5-flash-image-preview",
        "gemini-3-pro-image-preview",
        "gemini-3.1-flash-image-preview",
    }
)
ASPECT_RATIOS = frozenset(
    {
        "1:1",
        "2:3",
        "3:2",
        "3:4",
        "4:3",
        "4:5",
        "5:4",
        "9:16",
        "16:9",
        "21:9",
        "1:4",
        "4:1",
        "1:8",
        "8:1",
    }
)
IMAGE_SIZES = frozenset({"512", "1K", "2K", "4K"})
INPUT_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})

_PATH = re.compile(r"^(?P<prefix>.*?)/v1beta/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")


def _both(*camel: str) -> frozenset[str]:
    """Proto JSON accepts a field by its camelCase or its snake_case name."""
    names = set(camel)
    names.update(re.sub(r"(?<!^)([A-Z])", r"_\1", c).lower() for c in camel)
    return frozenset(names)


TOP_LEVEL_FIELDS = _both(
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
    "labels",
)
GENERATION_CONFIG_FIELDS = _both(
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
)
IMAGE_CONFIG_FIELDS = _both("aspectRatio", "imageSize")
PART_DATA_FIELDS = _both(
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)


# ---------------------------------------------------------------------------------------
# Pictures


def make_png(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A small real PNG: a colour gradient that differs with ``seed``."""
    r0, g0, b0 = (seed * 97) % 256, (seed * 57 + 80) % 256, (seed * 31 + 160) % 256
    img = Image.new("RGB", (width, height))
    img.putdata(
        [((r0 + x * 3) % 256, (g0 + y * 3) % 256, b0) for y in range(height) for x in range(width)]
    )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def resized(data: bytes, size: tuple[int, int]) -> bytes:
    """``data`` stretched to ``size`` (fast, for the big sizes a model answers with)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.size == size:
            return data
        out = io.BytesIO()
        img.convert("RGB").resize(size, Image.Resampling.NEAREST).save(
            out, format="PNG", compress_level=1)
        return out.getvalue()


def _asked_size(data: bytes, aspect: str | None, size: str | None) -> tuple[int, int]:
    """The sides the service answers with for ``aspect`` and ``size`` (1K ≈ 1024² pixels,
    2K and 4K four and sixteen times that, in multiples of 16, like the live service);
    without a size, the picture's own short side; without a ratio, its own shape."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    ratio = width / height
    if aspect in ASPECT_RATIOS:
        a, b = (int(n) for n in str(aspect).split(":"))
        ratio = a / b
    if size not in IMAGE_SIZES:
        return _size_for(aspect, base=min(width, height)) if aspect else (width, height)
    pixels = round((1024 * {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}[str(size)]) ** 2)
    return (max(16, round(math.sqrt(pixels * ratio) / 16) * 16),
            max(16, round(math.sqrt(pixels / ratio) / 16) * 16))


def invert_image(data: bytes) -> bytes | None:
    """The "edit" the fake performs: a colour-inverted PNG, or None if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            inverted = ImageOps.invert(img.convert("RGB"))
    except Exception:
        return None
    out = io.BytesIO()
    inverted.save(out, format="PNG")
    return out.getvalue()


def grayscale_png(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        gray = img.convert("L")
    out = io.BytesIO()
    gray.save(out, format="PNG")
    return out.getvalue()


def _size_for(aspect: str | None, base: int = 64) -> tuple[int, int]:
    if aspect and aspect in ASPECT_RATIOS:
        a, b = (int(n) for n in aspect.split(":"))
        if a >= b:
            return round(base * a / b), base
        return base, round(base * b / a)
    return base, base


# ---------------------------------------------------------------------------------------
# Signatures


def _b64decode(value: str) -> bytes | None:
    """Proto JSON ``bytes``: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str):
        return None
    padded = value + "=" * (-len(value) % 4)
    try:
        if re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value):
            return base64.b64decode(padded, validate=True)
        if re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
            return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return None
    return None


def new_signature(size: int = 300) -> str:
    """A fresh, verifiable signature of about ``size`` random bytes (base64)."""
    nonce = os.urandom(16)
    body = os.urandom(max(0, size))
    tag = hmac.new(SIGNATURE_SECRET, nonce + body, hashlib.sha256).digest()[:16]
    return base64.b64encode(nonce + body + tag).decode("ascii")


def signature_is_valid(signature: str) -> bool:
    if signature in DUMMY_SIGNATURES:
        return True
    raw = _b64decode(signature)
    if raw is None or len(raw) < 32:
        return False
    payload, tag = raw[:-16], raw[-16:]
    expected = hmac.new(SIGNATURE_SECRET, payload, hashlib.sha256).digest()[:16]
    return hmac.compare_digest(tag, expected)


# ---------------------------------------------------------------------------------------
# Bodies


def error_body(
    code: int, message: str, status: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    403: "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API.",
    404: "Requested entity was not found.",
    408: "Request timed out.",
    429: "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    502: "Bad Gateway",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


def google_error(
    status: int,
    message: str | None = None,
    *,
    status_name: str | None = None,
    details: list[dict[str, Any]] | None = None,
    retry_delay: str | None = None,
    daily_quota: bool = False,
) -> dict[str, Any]:
    """A Google-shaped error body; a 429 carries the QuotaFailure and Help details the
    service sends, and RetryInfo with ``retry_delay``."""
    details = list(details or [])
    if status == 429 and not details:
        quota_id = (
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
            if daily_quota
            else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        )
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": "gemini"},
                        "quotaValue": "10",
                    }
                ],
            }
        )
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            }
        )
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    text = message or _DEFAULT_MESSAGES.get(status, "Error")
    if status == 429 and retry_delay and message is None:
        text += f"\nPlease retry in {retry_delay}."
    body = error_body(
        status, text, status_name or _STATUS_NAMES.get(status, "UNKNOWN"), details
    )
    return body


def _key_invalid_details(key: str, reason: str) -> list[dict[str, Any]]:
    message = "API key not valid. Please pass a valid API key."
    return [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": message},
        # the live service echoes the rejected key here
        {"@type": "type.googleapis.com/google.rpc.DebugInfo",
         "detail": f"Invalid API key: {key}"},
    ]


def usage_metadata(
    prompt_text_tokens: int,
    prompt_images: int,
    output_images: int,
    text_tokens: int,
    thoughts: int = 0,
) -> dict[str, Any]:
    prompt = prompt_text_tokens + 258 * prompt_images
    candidates = 1290 * output_images + text_tokens
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_text_tokens}],
    }
    if prompt_images:
        meta["promptTokensDetails"].append({"modality": "IMAGE", "tokenCount": 258 * prompt_images})
    if output_images:
        meta["candidatesTokensDetails"] = [
            {"modality": "IMAGE", "tokenCount": 1290 * output_images}
        ]
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    meta["serviceTier"] = "standard"
    return meta


def _response_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")[:22]


# ---------------------------------------------------------------------------------------
# What the fake saw


@dataclass
class RecordedRequest:
    """One request as received: ``json`` is None when the body was not JSON."""

    method: str
    path: str
    prefix: str
    model: str
    rpc: str
    headers: CIMultiDict[str]
    query: dict[str, str]
    body: bytes
    json: Any
    status: int = 0  # the HTTP status the fake answered with

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key")

    @property
    def contents(self) -> list[dict[str, Any]]:
        data = self.json if isinstance(self.json, dict) else {}
        contents = data.get("contents")
        return contents if isinstance(contents, list) else []

    @property
    def generation_config(self) -> dict[str, Any]:
        data = self.json if isinstance(self.json, dict) else {}
        config = data.get("generationConfig", data.get("generation_config"))
        return config if isinstance(config, dict) else {}

    def parts(self, role: str | None = None) -> list[dict[str, Any]]:
        """Every part of every content (of one role if given), in order."""
        return [
            p
            for c in self.contents
            if isinstance(c, dict) and (role is None or c.get("role", "user") == role)
            for p in c.get("parts", [])
            if isinstance(p, dict)
        ]

    def images(self, role: str | None = None) -> list[bytes]:
        """Decoded non-thought inline images, in order."""
        out = []
        for p in self.parts(role):
            inline = p.get("inlineData", p.get("inline_data"))
            if isinstance(inline, dict) and not p.get("thought"):
                data = _b64decode(inline.get("data", ""))
                if data is not None:
                    out.append(data)
        return out

    def texts(self, role: str | None = "user") -> list[str]:
        return [p["text"] for p in self.parts(role) if isinstance(p.get("text"), str)]

    @property
    def prompt(self) -> str:
        """The text of the last user content (what the user just asked)."""
        for content in reversed(self.contents):
            if isinstance(content, dict) and content.get("role", "user") == "user":
                return " ".join(
                    p["text"]
                    for p in content.get("parts", [])
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                ).strip()
        return ""


@dataclass
class Scripted:
    """A queued answer. ``body=None`` with status 200 means "the default answer"."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _Reject(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _invalid(message: str) -> _Reject:
    return _Reject(400, error_body(400, message, "INVALID_ARGUMENT"))


# ---------------------------------------------------------------------------------------
# The server


class FakeGemini:
    """The fake service. ``api_key`` is the key clients must send (any key will do with
    ``accept_any_key``; the header is required either way); ``models=None`` accepts the
    usual image models plus any ``gemini-*image*`` name.

    ``api_keys`` are accepted too; :meth:`exhaust_key` and :meth:`refuse_key` make one
    of them answer as a key out of quota or a bad key does.

    ``auth`` makes it a relay that reads the key from elsewhere, like the relays that
    speak Gemini's API: ``"authorization"`` (the whole ``Authorization`` value) or
    ``"bearer"`` (``Authorization: Bearer <key>``). A relay ignores ``x-goog-api-key``
    and answers a missing key with 401."""

    def __init__(
        self,
        *,
        api_key: str = "test-gemini-key",
        api_keys: Iterable[str] = (),
        auth: str = "x-goog-api-key",
        accept_any_key: bool = False,
        models: Iterable[str] | None = None,
        signature_bytes: int = 300,
        reply_text: str | None = None,
        ignore_image_config: bool = False,
        port: int = 0,
    ) -> None:
        if auth not in ("x-goog-api-key", "authorization", "bearer"):
            raise ValueError(f"unknown auth scheme {auth!r}")
        self.api_key = api_key
        #: more keys the fake accepts (a pool's)
        self.api_keys = frozenset(api_keys)
        #: key -> the (status, body) that key answers with, whatever is queued
        self.key_faults: dict[str, tuple[int, Any]] = {}
        self.auth = auth
        self.accept_any_key = accept_any_key
        self.models = frozenset(models) if models is not None else None
        self.signature_bytes = signature_bytes
        self.reply_text = reply_text
        #: a relay that drops imageConfig: every picture comes back 1K, square
        self.ignore_image_config = ignore_image_config
        self.requests: list[RecordedRequest] = []
        #: every JSON body the fake answered with (status 200 or not), in order
        self.answers: list[Any] = []
        self.issued_signatures: list[str] = []
        self._queue: collections.deque[Scripted] = collections.deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._closing = threading.Event()
        self._runner: web.AppRunner | None = None
        self._counter = 0
        self.port = port  # 0: any free port (tests); a fixed one for `python -m tests.fakes`

    # -- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self._closing.clear()

    async def stop(self) -> None:
        self._closing.set()
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGemini:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **kwargs: Any) -> Iterator[FakeGemini]:
        """Run a fake on its own event loop in a daemon thread (for subprocess tests)."""
        fake = cls(**kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(fake.start())
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-gemini", daemon=True)
        thread.start()
        ready.wait(10)
        if failure:
            loop.close()
            raise failure[0]
        try:
            yield fake
        finally:
            asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # -- scripting

    def enqueue(
        self,
        body: Any = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        raw: bytes | str | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue the next answer(s): a JSON ``body`` (or ``raw`` bytes) with ``status``
        and ``headers`` after ``delay`` seconds. ``body=None`` at 200 is the default
        answer, so ``enqueue(delay=5)`` is "answer normally, but late"."""
        raw_bytes = raw.encode() if isinstance(raw, str) else raw
        with self._lock:
            for _ in range(times):
                self._queue.append(Scripted(status, body, raw_bytes, dict(headers or {}), delay))

    def enqueue_error(
        self,
        status: int,
        message: str | None = None,
        *,
        status_name: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_delay: str | None = None,
        retry_after: str | None = None,
        daily_quota: bool = False,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue a Google-shaped error. For 429, ``retry_delay`` ("1.5s") adds the
        ``RetryInfo`` detail the service sends; ``retry_after`` sets the header."""
        body = google_error(status, message, status_name=status_name, details=details,
                            retry_delay=retry_delay, daily_quota=daily_quota)
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        self.enqueue(body, status=status, headers=headers, delay=delay, times=times)

    def exhaust_key(self, key: str, *, retry_delay: str | None = "30s",
                    daily_quota: bool = False) -> None:
        """From now on ``key`` answers 429 RESOURCE_EXHAUSTED with a QuotaFailure (and
        RetryInfo ``retry_delay``), whatever is queued; :meth:`restore_key` ends it."""
        self.key_faults[key] = (429, google_error(429, retry_delay=retry_delay,
                                                  daily_quota=daily_quota))

    def refuse_key(self, key: str, *, status: int = 403,
                   reason: str | None = "API_KEY_INVALID") -> None:
        """From now on ``key`` is refused as the service refuses a bad key: ``status``
        with ErrorInfo ``reason`` (None: the "reported as leaked" 403, no reason)."""
        if reason is None:
            message = "Your API key was reported as leaked. Please use another API key."
            body = error_body(status, message, _STATUS_NAMES[status])
        else:
            body = error_body(status, "API key not valid. Please pass a valid API key.",
                              _STATUS_NAMES[status], _key_invalid_details(key, reason))
        self.key_faults[key] = (status, body)

    def restore_key(self, key: str) -> None:
        self.key_faults.pop(key, None)

    def enqueue_block(self, reason: str = "SAFETY", *, message: str | None = None) -> None:
        """Queue a prompt block: HTTP 200, ``promptFeedback.blockReason``, no candidates."""
        feedback: dict[str, Any] = {"blockReason": reason}
        if message:
            feedback["blockReasonMessage"] = message
        self.enqueue(
            {
                "promptFeedback": feedback,
                "usageMetadata": usage_metadata(12, 1, 0, 0),
                "modelVersion": "{model}",
                "responseId": _response_id(),
            }
        )

    def enqueue_finish(
        self,
        reason: str,
        *,
        text: str | None = None,
        finish_message: str | None = None,
    ) -> None:
        """Queue a candidate that stopped with ``finishReason`` and no picture."""
        candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
        if text is not None:
            candidate["content"] = {
                "parts": [{"text": text, "thoughtSignature": self.new_signature()}],
                "role": "model",
            }
        if finish_message:
            candidate["finishMessage"] = finish_message
        self.enqueue(
            {
                "candidates": [candidate],
                "usageMetadata": usage_metadata(12, 1, 0, 5 if text else 0),
                "modelVersion": "{model}",
                "responseId": _response_id(),
            }
        )

    def enqueue_text_only(self, text: str = "I can't edit this picture.") -> None:
        """Queue an answer with words but no picture (finishReason STOP)."""
        self.enqueue_answer([self.text_part(text, signature=True)])

    def enqueue_answer(
        self,
        parts: list[dict[str, Any]],
        *,
        finish_reason: str = "STOP",
        usage: dict[str, Any] | None = None,
        **top_level: Any,
    ) -> None:
        """Queue an answer made of exactly these part objects, in the real envelope."""
        images = sum(1 for p in parts if "inlineData" in p and not p.get("thought"))
        body: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": finish_reason,
                    "index": 0,
                }
            ],
            "usageMetadata": usage or usage_metadata(12, 1, images, 8),
            "modelVersion": "{model}",
            "responseId": _response_id(),
        }
        body.update(top_level)
        self.enqueue(body)

    def enqueue_picture(self, data: bytes, text: str = "Here you go.") -> None:
        """Queue an answer with words and this very picture (signed, as a real one is)."""
        self.enqueue_answer([self.text_part(text), self.image_part(data)])

    def new_signature(self, size: int | None = None) -> str:
        signature = new_signature(self.signature_bytes if size is None else size)
        self.issued_signatures.append(signature)
        return signature

    def image_part(
        self,
        data: bytes | None = None,
        *,
        mime_type: str = "image/png",
        signature: bool | str = True,
        thought: bool = False,
    ) -> dict[str, Any]:
        """An ``inlineData`` part; ``signature=True`` mints a valid one."""
        part: dict[str, Any] = {
            "inlineData": {
                "mimeType": mime_type,
                "data": base64.b64encode(data or make_png(seed=self._next())).decode(),
            }
        }
        if thought:
            part["thought"] = True
        if signature:
            part["thoughtSignature"] = (
                signature if isinstance(signature, str) else self.new_signature()
            )
        return part

    def text_part(self, text: str, *, signature: bool | str = False) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text}
        if signature:
            part["thoughtSignature"] = (
                signature if isinstance(signature, str) else self.new_signature()
            )
        return part

    def pause(self) -> None:
        """Hold every answer (requests are still recorded) until :meth:`resume`."""
        self._released.clear()

    def resume(self) -> None:
        self._released.set()

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.answers.clear()

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    @property
    def pending(self) -> int:
        """Scripted answers not yet used."""
        return len(self._queue)

    async def wait_for_requests(self, count: int, within: float = 10.0) -> None:
        """Wait (in the caller's loop) until ``count`` requests have arrived.

        Polls, because requests may be recorded by another thread's loop."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    def wait_for_requests_blocking(self, count: int, timeout: float = 10.0) -> bool:
        """The same from a plain thread (``in_thread`` mode); False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.requests) >= count

    # -- serving

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    async def _pause_point(self, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while not self._closing.is_set():
            left = until - loop.time()
            if self._released.is_set() and left <= 0:
                return
            await asyncio.sleep(0.01 if left <= 0 else min(0.01, left))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        match = _PATH.match(request.path)
        try:
            parsed: Any = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            prefix=match.group("prefix") if match else "",
            model=match.group("model") if match else "",
            rpc=match.group("method") if match else "",
            headers=CIMultiDict(request.headers),
            query=dict(request.query),
            body=body,
            json=parsed,
        )
        with self._lock:
            self.requests.append(recorded)
        await self._pause_point()
        try:
            status, headers, payload = await self._answer(recorded)
        except _Reject as rejected:
            status, headers, payload = rejected.status, {}, rejected.body
        recorded.status = status
        if isinstance(payload, bytes):
            return web.Response(status=status, body=payload, headers=headers)
        self.answers.append(payload)
        return web.Response(
            status=status,
            text=json.dumps(payload, indent=2),
            content_type="application/json",
            charset="UTF-8",
            headers=headers,
        )

    async def _answer(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        key = self._key_of(req)
        if not key and self.auth != "x-goog-api-key":
            raise _Reject(401, error_body(401, _DEFAULT_MESSAGES[401], "UNAUTHENTICATED"))
        if not key:
            raise _Reject(403, error_body(403, _DEFAULT_MESSAGES[403], "PERMISSION_DENIED"))
        if key in self.key_faults:
            raise _Reject(*self.key_faults[key])
        if not self.accept_any_key and key != self.api_key and key not in self.api_keys:
            message = "API key not valid. Please pass a valid API key."
            raise _Reject(400, error_body(400, message, "INVALID_ARGUMENT",
                                          _key_invalid_details(key, "API_KEY_INVALID")))
        if len(req.body) > MAX_REQUEST_BYTES:
            raise _invalid(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        if req.method != "POST" or not req.model or req.rpc != "generateContent":
            raise _Reject(404, error_body(404, _DEFAULT_MESSAGES[404], "NOT_FOUND"))
        if not self._known_model(req.model):
            raise _Reject(
                404,
                error_body(
                    404,
                    f"models/{req.model} is not found for API version v1beta, or is not "
                    "supported for generateContent. Call ListModels to see the list of "
                    "available models and their supported methods.",
                    "NOT_FOUND",
                ),
            )
        self._validate(req)
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is not None:
            await self._pause_point(scripted.delay)
            if scripted.raw is not None:
                return scripted.status, scripted.headers, scripted.raw
            if scripted.body is not None:
                body = _fill_model(scripted.body, req.model)
                return scripted.status, scripted.headers, body
            if scripted.status != 200:
                return (
                    scripted.status,
                    scripted.headers,
                    error_body(
                        scripted.status,
                        _DEFAULT_MESSAGES.get(scripted.status, "Error"),
                        _STATUS_NAMES.get(scripted.status, "UNKNOWN"),
                    ),
                )
        return 200, {}, await asyncio.to_thread(self._default_answer, req)

    def _key_of(self, req: RecordedRequest) -> str | None:
        """The key where this service expects it (Google also takes ``?key=``)."""
        if self.auth == "x-goog-api-key":
            return req.api_key or req.query.get("key")
        value = req.headers.get("authorization")
        if self.auth == "bearer":
            scheme, _, token = (value or "").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
        return value

    def _known_model(self, model: str) -> bool:
        if self.models is not None:
            return model in self.models
        return model in DEFAULT_MODELS or bool(re.fullmatch(r"gemini-[\w.-]*image[\w.-]*", model))

    def _validate(self, req: RecordedRequest) -> None:
        """Refuse what the service refuses, with its messages."""
        data = req.json
        if not isinstance(data, dict):
            raise _invalid("Invalid JSON payload received. Unexpected token.")
        for name in data:
            if name not in TOP_LEVEL_FIELDS:
                raise _invalid(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                )
        contents = data.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
        strict = req.model.startswith("gemini-3")
        for ci, content in enumerate(contents):
            if not isinstance(content, dict):
                raise _invalid(f"Invalid JSON payload received. contents[{ci}] is not an object.")
            role = content.get("role", "user")
            if role not in ("user", "model"):
                raise _invalid("Please use a valid role: user, model.")
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                raise _invalid(
                    f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not "
                    "be empty.\n"
                )
            for pi, part in enumerate(parts):
                self._validate_part(part, ci, pi, role=role, strict=strict)
        config = data.get("generationConfig", data.get("generation_config"))
        if config is not None:
            self._validate_config(config)

    def _validate_part(self, part: Any, ci: int, pi: int, *, role: str, strict: bool) -> None:
        where = f"contents[{ci}].parts[{pi}]"
        if not isinstance(part, dict):
            raise _invalid(f"Invalid JSON payload received. {where} is not an object.")
        data_fields = [name for name in part if name in PART_DATA_FIELDS]
        if not data_fields:
            raise _invalid(
                f"* GenerateContentRequest.{where}.data: required oneof field 'data' must "
                "have one initialized field\n"
            )
        if len(data_fields) > 1:
            raise _invalid(
                f"Invalid JSON payload received. Oneof field 'data' is already set. "
                f"Cannot set '{data_fields[1]}' at '{where}'."
            )
        inline = part.get("inlineData", part.get("inline_data"))
        if inline is not None:
            if not isinstance(inline, dict):
                raise _invalid(f"Invalid value at '{where}.inline_data'.")
            mime = inline.get("mimeType", inline.get("mime_type"))
            if mime not in INPUT_MIME_TYPES:
                raise _invalid(f"Unsupported MIME type: {mime}")
            if _b64decode(inline.get("data", "")) is None:
                raise _invalid(
                    f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 "
                    f'decoding failed for "{str(inline.get("data"))[:40]}"'
                )
        signature = part.get("thoughtSignature", part.get("thought_signature"))
        if (
            signature is not None
            and (not isinstance(signature, str) or _b64decode(signature) is None)
            and signature not in DUMMY_SIGNATURES
        ):
            raise _invalid(
                f"Invalid value at '{where}.thought_signature' (TYPE_BYTES), Base64 decoding "
                f'failed for "{str(signature)[:40]}"'
            )
        if not strict or role != "model":
            return
        if inline is not None and not part.get("thought") and signature is None:
            raise _invalid(
                f"Image part is missing a thought_signature in content position {ci + 1}, "
                f"part position {pi + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures#model-behavior "
                "for more details."
            )
        if signature is not None and not signature_is_valid(signature):
            raise _invalid("Corrupted thought signature.")

    def _validate_config(self, config: Any) -> None:
        if not isinstance(config, dict):
            raise _invalid("Invalid value at 'generation_config'.")
        for name in config:
            if name not in GENERATION_CONFIG_FIELDS:
                raise _invalid(
                    f'Invalid JSON payload received. Unknown name "{name}" at '
                    "'generation_config': Cannot find field."
                )
        modalities = config.get("responseModalities", config.get("response_modalities", []))
        for i, modality in enumerate(modalities if isinstance(modalities, list) else [None]):
            if not isinstance(modality, str) or modality.upper() not in ("TEXT", "IMAGE", "AUDIO"):
                raise _invalid(
                    f"Invalid value at 'generation_config.response_modalities[{i}]' "
                    "(type.googleapis.com/google.ai.generativelanguage.v1beta."
                    f'GenerationConfig.Modality), "{modality}"'
                )
        image_config = config.get("imageConfig", config.get("image_config"))
        if image_config is None:
            return
        if not isinstance(image_config, dict):
            raise _invalid("Invalid value at 'generation_config.image_config'.")
        for name in image_config:
            if name not in IMAGE_CONFIG_FIELDS:
                raise _invalid(
                    f'Invalid JSON payload received. Unknown name "{name}" at '
                    "'generation_config.image_config': Cannot find field."
                )
        aspect = image_config.get("aspectRatio", image_config.get("aspect_ratio"))
        if aspect is not None and aspect not in ASPECT_RATIOS:
            raise _invalid(f"Unsupported aspect ratio: {aspect}.")
        size = image_config.get("imageSize", image_config.get("image_size"))
        if size is not None and size not in IMAGE_SIZES:
            raise _invalid(f"Unsupported image size: {size}. Use 1K, 2K or 4K.")

    def _default_answer(self, req: RecordedRequest) -> dict[str, Any]:
        """Text plus an edited (inverted) copy of the newest input image, or a new one."""
        config = req.generation_config
        modalities = config.get("responseModalities", config.get("response_modalities"))
        wants_image = not modalities or "IMAGE" in [str(m).upper() for m in modalities]
        prompt = req.prompt
        text = self.reply_text or (
            f"Here is the result for: {prompt[:200]}" if prompt else "Here is your image."
        )
        parts: list[dict[str, Any]] = []
        output_images = 0
        if wants_image:
            edited = None
            for data in reversed(req.images()):
                edited = invert_image(data)
                if edited is not None:
                    break
            image_config = config.get("imageConfig", config.get("image_config")) or {}
            aspect = image_config.get("aspectRatio", image_config.get("aspect_ratio"))
            size = image_config.get("imageSize", image_config.get("image_size"))
            if edited is None:
                width, height = _size_for(aspect)
                edited = make_png(width, height, seed=self._next())
            if self.ignore_image_config:
                edited = resized(edited, (1024, 1024))  # the service's default: 1K
            elif size or aspect:
                edited = resized(edited, _asked_size(edited, aspect, size))
            if req.model.startswith("gemini-3"):
                parts.append(self.image_part(grayscale_png(edited), thought=True, signature=False))
            parts.append(self.text_part(text, signature=True))
            parts.append(self.image_part(edited))
            output_images = 1
        else:
            parts.append(self.text_part(text, signature=True))
        thoughts = 120 if req.model.startswith("gemini-3") else 0
        return {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage_metadata(
                max(1, len(prompt) // 4),
                len(req.images()),
                output_images,
                max(1, len(text) // 4),
                thoughts,
            ),
            "modelVersion": req.model,
            "responseId": _response_id(),
            "turnToken": "v1_" + secrets.token_urlsafe(24),
        }


def _fill_model(body: Any, model: str) -> Any:
    """Scripted bodies say ``"modelVersion": "{model}"``; fill in the requested model."""
    if isinstance(body, dict) and body.get("modelVersion") == "{model}":
        return {**body, "modelVersion": model}
    return body
