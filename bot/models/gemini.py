"""Gemini image models over the REST ``generateContent`` endpoint.

Why hand-written rather than the SDK: we must replay model turns *exactly* (Gemini 3
rejects a history whose image parts lost their ``thoughtSignature``), keep fields we do
not know about, bound every call in time, and turn each of the service's many failure
shapes into one short message a chat user can act on. Plain httpx keeps all of that
visible and testable against the fake server in ``tests/fakes/gemini.py``.

The API key travels only in the ``x-goog-api-key`` header: never in a URL, a log line,
an exception or a user message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from bot.config import Settings, SettingsError
from bot.models.base import (
    Blob,
    Content,
    FailureKind,
    GenerateRequest,
    GenerateResult,
    ImageModel,
    ModelError,
    Part,
    Usage,
    image_cap_for,
)

logger = logging.getLogger(__name__)

#: statuses worth another attempt: timeouts, rate limits and transient server trouble
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]

# ---------------------------------------------------------------------------------------
# Part <-> JSON


_B64_STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")

_PART_KNOWN = {
    "text",
    "inlineData",
    "inline_data",
    "thought",
    "thoughtSignature",
    "thought_signature",
}
_INLINE_KNOWN = {"data", "mimeType", "mime_type"}


class MalformedAnswer(ValueError):
    """The service (or a proxy) sent something that is not a valid answer."""


def b64decode_strict(value: Any) -> bytes:
    """Decode standard or URL-safe base64, refusing anything else (no silent garbage)."""
    if not isinstance(value, str):
        raise MalformedAnswer(f"base64 data is {type(value).__name__}, not a string")
    if _B64_STD.fullmatch(value):
        alphabet_ok, urlsafe = True, False
    elif _B64_URL.fullmatch(value):
        alphabet_ok, urlsafe = True, True
    else:
        alphabet_ok, urlsafe = False, False
    if not alphabet_ok:
        raise MalformedAnswer("base64 data contains invalid characters")
    padded = value + "=" * (-len(value) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedAnswer(f"invalid base64 data: {exc}") from None


def part_from_json(d: Mapping[str, Any]) -> Part:
    """Build a :class:`Part` from a part object, camelCase or snake_case.

    Fields we do not model stay in ``Part.extra`` under their received names, and other
    fields of ``inlineData`` under ``extra["inlineData"]``, so :func:`part_to_json` can
    send the part back as it came. Raises :class:`MalformedAnswer` on a broken part.
    """
    if not isinstance(d, Mapping):
        raise MalformedAnswer(f"part is {type(d).__name__}, not an object")
    text = d.get("text")
    if text is not None and not isinstance(text, str):
        raise MalformedAnswer("part text is not a string")
    extra: dict[str, Any] = {k: v for k, v in d.items() if k not in _PART_KNOWN}
    image: Blob | None = None
    inline = d.get("inlineData", d.get("inline_data"))
    if inline is not None:
        if not isinstance(inline, Mapping):
            raise MalformedAnswer("inlineData is not an object")
        mime = inline.get("mimeType", inline.get("mime_type"))
        if not isinstance(mime, str) or not mime:
            raise MalformedAnswer("inlineData has no mimeType")
        if "data" not in inline:
            raise MalformedAnswer("inlineData has no data")
        image = Blob(mime_type=mime, data=b64decode_strict(inline["data"]))
        inline_extra = {k: v for k, v in inline.items() if k not in _INLINE_KNOWN}
        if inline_extra:
            extra["inlineData"] = inline_extra
    signature = d.get("thoughtSignature", d.get("thought_signature"))
    if signature is not None and not isinstance(signature, str):
        raise MalformedAnswer("thoughtSignature is not a string")
    thought = d.get("thought", False)
    return Part(
        text=text,
        image=image,
        thought=bool(thought),
        thought_signature=signature,
        extra=extra,
    )


def part_to_json(part: Part) -> dict[str, Any]:
    """The camelCase wire form of a part; a received part comes back unchanged."""
    out: dict[str, Any] = {}
    if part.text is not None:
        out["text"] = part.text
    if part.image is not None:
        inline: dict[str, Any] = {
            "mimeType": part.image.mime_type,
            "data": base64.b64encode(part.image.data).decode("ascii"),
        }
        inline_extra = part.extra.get("inlineData")
        if isinstance(inline_extra, Mapping):
            for key, value in inline_extra.items():
                inline.setdefault(key, value)
        out["inlineData"] = inline
    if part.thought:
        out["thought"] = True
    if part.thought_signature is not None:
        out["thoughtSignature"] = part.thought_signature
    for key, value in part.extra.items():
        if key == "inlineData" and part.image is not None:
            continue
        out.setdefault(key, value)
    return out


def content_to_json(content: Content) -> dict[str, Any]:
    return {"role": content.role, "parts": [part_to_json(p) for p in content.parts]}


# ---------------------------------------------------------------------------------------
# What users read. Short, human, no codes they cannot act on, never a secret.

_TRY_AGAIN = "Please try again in a few minutes."

BLOCK_MESSAGES: dict[str, str] = {
    "SAFETY": "Your request was blocked by the model's safety filter. "
    "Try rephrasing it or using a different picture.",
    "BLOCKLIST": "Your request contains words the model won't accept. Try rephrasing it.",
    "PROHIBITED_CONTENT": "Your request was blocked as prohibited content. "
    "Try a different request or picture.",
    "IMAGE_SAFETY": "A picture in your request was blocked by the model's safety filter. "
    "Try a different picture.",
    "OTHER": "The model refused this request without giving a reason. "
    "Try rephrasing it or using a different picture.",
}
_BLOCK_DEFAULT = BLOCK_MESSAGES["OTHER"]

# finishReason -> (kind, message)
FINISH_MESSAGES: dict[str, tuple[FailureKind, str]] = {
    "SAFETY": (
        FailureKind.REFUSED,
        "The model stopped for safety reasons. Try rephrasing your request.",
    ),
    "IMAGE_SAFETY": (
        FailureKind.REFUSED,
        "The picture the model made was withheld by its safety filter. "
        "Try rephrasing your request.",
    ),
    "PROHIBITED_CONTENT": (
        FailureKind.REFUSED,
        "The model won't make this because it looks like prohibited content.",
    ),
    "IMAGE_PROHIBITED_CONTENT": (
        FailureKind.REFUSED,
        "The picture the model made was withheld as prohibited content.",
    ),
    "BLOCKLIST": (
        FailureKind.REFUSED,
        "Your request contains words the model won't accept. Try rephrasing it.",
    ),
    "SPII": (
        FailureKind.REFUSED,
        "The model stopped because the request seems to involve sensitive personal information.",
    ),
    "RECITATION": (
        FailureKind.REFUSED,
        "The model stopped because the result was too close to existing material. "
        "Try asking for something more original.",
    ),
    "IMAGE_RECITATION": (
        FailureKind.REFUSED,
        "The picture was withheld because it was too close to an existing image. "
        "Try asking for something more original.",
    ),
    "LANGUAGE": (
        FailureKind.REFUSED,
        "The model doesn't support the language of this request. Try English.",
    ),
    "NO_IMAGE": (
        FailureKind.NO_IMAGE,
        "The model didn't make a picture this time. Try describing the change more explicitly.",
    ),
    "IMAGE_OTHER": (
        FailureKind.NO_IMAGE,
        "The model couldn't make a picture for this request. Try again or rephrase it.",
    ),
    "MAX_TOKENS": (
        FailureKind.NO_IMAGE,
        "The model ran out of room before finishing the picture. Try a simpler request.",
    ),
    "MALFORMED_FUNCTION_CALL": (
        FailureKind.UNAVAILABLE,
        "The model's answer came back garbled. Please try again.",
    ),
    "MALFORMED_RESPONSE": (
        FailureKind.UNAVAILABLE,
        "The model's answer came back garbled. Please try again.",
    ),
}
_FINISH_DEFAULT = (
    FailureKind.NO_IMAGE,
    "The model stopped without making a picture. Try again or rephrase your request.",
)
_REFUSING_FINISHES = frozenset(
    reason for reason, (kind, _) in FINISH_MESSAGES.items() if kind is FailureKind.REFUSED
)

TEXT_ONLY_MESSAGE = "The model answered in words but didn't make a picture."
EMPTY_MESSAGE = "The model returned an empty answer. Please try again."
MALFORMED_MESSAGE = "The model service sent an answer the bot couldn't read. Please try again."
AUTH_MESSAGE = "The bot's Gemini API key was not accepted. Ask the bot's operator to check it."
BAD_REQUEST_MESSAGE = (
    "The model service rejected this request. Try rephrasing it, or /new to start over."
)
TOO_LARGE_MESSAGE = "The pictures are too large to send to the model. Try fewer or smaller ones."
REGION_MESSAGE = "The model service is not available from where the bot runs."
UNAVAILABLE_MESSAGE = "The model service is not answering right now. " + _TRY_AGAIN
TIMEOUT_MESSAGE = "The model took too long to answer. " + _TRY_AGAIN
UNREACHABLE_MESSAGE = "The bot could not reach the model service. " + _TRY_AGAIN
DAILY_QUOTA_MESSAGE = (
    "The bot has used up its daily quota for the model. Please try again tomorrow."
)


def unknown_model_message(model: str) -> str:
    return (
        f"The model “{model}” is unknown to the service. "
        "Ask the bot's operator to check GEMINI_MODEL."
    )


def rate_limited_message(wait: float | None) -> str:
    when = f"in {humanize_seconds(wait)}" if wait else "in a minute or two"
    return f"The model is getting too many requests right now. Please try again {when}."


def humanize_seconds(seconds: float) -> str:
    """'about 40 seconds', 'about 3 minutes' — roughly, because that is all users need."""
    if seconds < 60:
        return f"about {max(5, math.ceil(seconds / 5) * 5)} seconds"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return "about a minute" if minutes == 1 else f"about {minutes} minutes"
    hours = round(seconds / 3600)
    return "about an hour" if hours <= 1 else f"about {hours} hours"


# ---------------------------------------------------------------------------------------
# Reading answers and errors


def _get(d: Mapping[str, Any], camel: str) -> Any:
    """A field by its camelCase name, falling back to snake_case (both are accepted)."""
    if camel in d:
        return d[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return d.get(snake)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_usage(body: Mapping[str, Any]) -> Usage:
    """Token counts; thinking tokens are billed as output, so they count as output."""
    meta = _get(body, "usageMetadata")
    if not isinstance(meta, Mapping):
        return Usage()
    prompt = _int(_get(meta, "promptTokenCount"))
    output = _int(_get(meta, "candidatesTokenCount")) + _int(_get(meta, "thoughtsTokenCount"))
    total = _int(_get(meta, "totalTokenCount")) or prompt + output
    return Usage(prompt_tokens=prompt, output_tokens=output, total_tokens=total)


def parse_answer(raw: bytes) -> GenerateResult:
    """Turn an HTTP 200 body into a result, or raise the :class:`ModelError` it means."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            FailureKind.UNAVAILABLE, MALFORMED_MESSAGE, detail=f"answer is not JSON: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise ModelError(
            FailureKind.UNAVAILABLE,
            MALFORMED_MESSAGE,
            detail=f"answer is a JSON {type(body).__name__}, not an object",
        )
    usage = parse_usage(body)
    version = _get(body, "modelVersion")
    version = version if isinstance(version, str) else None
    candidates = body.get("candidates")
    feedback = _get(body, "promptFeedback")

    if not candidates:
        reason = _get(feedback, "blockReason") if isinstance(feedback, Mapping) else None
        if reason:
            reason = str(reason)
            message = BLOCK_MESSAGES.get(reason, _BLOCK_DEFAULT)
            extra = _get(feedback, "blockReasonMessage") if isinstance(feedback, Mapping) else ""
            raise ModelError(
                FailureKind.REFUSED,
                message,
                detail=f"prompt blocked: {reason} {extra or ''}".strip(),
                usage=usage,
            )
        raise ModelError(
            FailureKind.UNAVAILABLE,
            EMPTY_MESSAGE,
            detail="answer has no candidates and no block reason",
            usage=usage,
        )
    if not isinstance(candidates, list) or not isinstance(candidates[0], Mapping):
        raise ModelError(
            FailureKind.UNAVAILABLE,
            MALFORMED_MESSAGE,
            detail="candidates is not a list of objects",
            usage=usage,
        )
    candidate = candidates[0]
    finish = _get(candidate, "finishReason")
    finish = str(finish) if finish else None
    finish_message = _get(candidate, "finishMessage") or ""
    content = candidate.get("content") or {}
    raw_parts = content.get("parts", []) if isinstance(content, Mapping) else None
    if raw_parts is None and isinstance(content, Mapping):
        raw_parts = []
    if not isinstance(raw_parts, list):
        raise ModelError(
            FailureKind.UNAVAILABLE,
            MALFORMED_MESSAGE,
            detail="candidate content or content.parts has the wrong type",
            usage=usage,
        )
    try:
        parts = tuple(part_from_json(p) for p in raw_parts)
    except MalformedAnswer as exc:
        raise ModelError(
            FailureKind.UNAVAILABLE, MALFORMED_MESSAGE, detail=f"bad part: {exc}", usage=usage
        ) from None

    result = GenerateResult(parts=parts, usage=usage, model_version=version)
    text = result.text or None
    if result.images and finish not in _REFUSING_FINISHES:
        return result
    detail = f"finishReason={finish} {finish_message}".strip()
    if finish and finish != "STOP":
        kind, message = FINISH_MESSAGES.get(finish, _FINISH_DEFAULT)
        raise ModelError(kind, message, detail=detail, text=text, usage=usage)
    if text:
        raise ModelError(
            FailureKind.NO_IMAGE, TEXT_ONLY_MESSAGE, detail=detail, text=text, usage=usage
        )
    raise ModelError(FailureKind.NO_IMAGE, EMPTY_MESSAGE, detail=detail, usage=usage)


def parse_duration(value: Any) -> float | None:
    """A protobuf JSON Duration ("34.449s") in seconds."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", value)
    return float(match.group(1)) if match else None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ServiceError:
    """The parts of a Google error body we act on; tolerant of proxies' HTML pages."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.code_name = ""
        self.message = ""
        self.details: list[Mapping[str, Any]] = []
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, list) and body:  # some proxies wrap the error in a list
            body = body[0]
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            self.code_name = str(error.get("status") or "")
            self.message = str(error.get("message") or "")
            details = error.get("details")
            if isinstance(details, list):
                self.details = [d for d in details if isinstance(d, Mapping)]
        else:
            self.message = response.text[:200].strip()
        self.retry_after = self._retry_delay(response)

    def _detail(self, type_suffix: str) -> list[Mapping[str, Any]]:
        return [d for d in self.details if str(d.get("@type", "")).endswith(type_suffix)]

    def _retry_delay(self, response: httpx.Response) -> float | None:
        delays: list[float] = []
        for info in self._detail("google.rpc.RetryInfo"):
            delay = parse_duration(info.get("retryDelay"))
            if delay is not None:
                delays.append(delay)
        header = parse_retry_after(response.headers.get("retry-after"))
        if header is not None:
            delays.append(header)
        return max(delays) if delays else None

    @property
    def reason(self) -> str:
        infos = self._detail("google.rpc.ErrorInfo")
        return str(infos[0].get("reason", "")) if infos else ""

    @property
    def daily_quota(self) -> bool:
        """A per-day quota is exhausted: retrying within minutes cannot help."""
        for failure in self._detail("google.rpc.QuotaFailure"):
            for violation in failure.get("violations") or []:
                if isinstance(violation, Mapping) and "PerDay" in str(violation.get("quotaId", "")):
                    return True
        return False

    def summary(self) -> str:
        name = f" {self.code_name}" if self.code_name else ""
        return f"HTTP {self.status}{name}: {self.message}"[:1000]


# ---------------------------------------------------------------------------------------
# The model


class _Retryable(Exception):
    """One failed attempt that may be worth repeating; ``error`` is what users get."""

    def __init__(self, error: ModelError, *, retry_after: float | None = None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.retry_after = retry_after


class GeminiModel:
    """A Gemini image model, one pooled HTTP client per instance.

    ``backoff_base``/``backoff_max``/``jitter`` shape the waits between attempts
    (``base * 2**(n-1)`` capped, plus up to ``jitter`` random seconds) and ``sleep`` is
    how they are waited, so tests can run retries without sleeping for real.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str,
        timeout: float = 120.0,
        retry_budget: float = 180.0,
        max_attempts: int = 5,
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        max_input_images: int | None = None,
        client: httpx.AsyncClient | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        jitter: float = 1.0,
        sleep: Sleep | None = None,
    ) -> None:
        model = model.strip().removeprefix("models/")
        if not model:
            raise ValueError("model name is empty")
        self.name = model
        self.max_input_images = max_input_images or image_cap_for(model)
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.max_attempts = max(1, max_attempts)
        self.aspect_ratio = aspect_ratio
        self.image_size = image_size
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.jitter = jitter
        self._sleep: Sleep = sleep or asyncio.sleep
        self._api_key = api_key.strip()
        self._url = generate_url(base_url, model)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"user-agent": "chatbrush"},
        )

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiModel(name={self.name!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiModel:
        key = settings.gemini_api_key.get_secret_value().strip() if settings.gemini_api_key else ""
        if not key:
            raise SettingsError(
                "GEMINI_API_KEY is not set: create a key at https://aistudio.google.com/apikey "
                "and put it in the environment or .env"
            )
        return cls(
            api_key=key,
            model=settings.gemini_model,
            base_url=settings.gemini_base_url,
            timeout=settings.gemini_timeout,
            retry_budget=settings.gemini_retry_budget,
            max_attempts=settings.gemini_max_attempts,
            aspect_ratio=settings.gemini_aspect_ratio,
            image_size=settings.gemini_image_size,
            max_input_images=settings.chatbrush_max_input_images
            or image_cap_for(settings.gemini_model),
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- the request

    def build_body(self, request: GenerateRequest) -> dict[str, Any]:
        """The JSON body of ``generateContent`` for a request (camelCase throughout)."""
        config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        image_config: dict[str, str] = {}
        aspect = request.aspect_ratio or self.aspect_ratio
        size = request.image_size or self.image_size
        if aspect:
            image_config["aspectRatio"] = aspect
        if size:
            image_config["imageSize"] = size
        if image_config:
            config["imageConfig"] = image_config
        return {
            "contents": [content_to_json(c) for c in request.contents],
            "generationConfig": config,
        }

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if not request.contents:
            raise ModelError(FailureKind.BAD_REQUEST, "There is nothing to send to the model.")
        # Encoding megabytes of base64 would stall the event loop: do it in a thread.
        payload = await asyncio.to_thread(
            lambda: json.dumps(self.build_body(request), separators=(",", ":")).encode()
        )
        deadline = time.monotonic() + self.retry_budget
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=lambda state: self._stop(state, deadline),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return await self._attempt(payload, number, deadline)
        except _Retryable as failed:
            raise failed.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        jitter = random.uniform(0, self.jitter) if self.jitter > 0 else 0.0
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after + jitter
        backoff = self.backoff_base * 2 ** (state.attempt_number - 1)
        return min(self.backoff_max, backoff) + jitter

    def _stop(self, state: RetryCallState, deadline: float) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if state.attempt_number >= self.max_attempts:
            return True
        remaining = deadline - time.monotonic()
        if state.upcoming_sleep >= remaining:
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                logger.info(
                    "gemini %s: service asks to wait %.1fs, over the remaining budget %.1fs",
                    self.name,
                    exc.retry_after,
                    max(0.0, remaining),
                )
            return True
        return False

    async def _attempt(self, payload: bytes, number: int, deadline: float) -> GenerateResult:
        budget_left = max(0.05, deadline - time.monotonic())
        attempt_timeout = min(self.timeout, budget_left)
        started = time.monotonic()
        try:
            async with asyncio.timeout(attempt_timeout):
                response = await self._client.post(
                    self._url,
                    content=payload,
                    headers={
                        "x-goog-api-key": self._api_key,
                        "content-type": "application/json",
                    },
                    timeout=httpx.Timeout(attempt_timeout),
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            self._log_attempt(number, "timeout", started)
            raise _Retryable(
                ModelError(
                    FailureKind.UNAVAILABLE,
                    TIMEOUT_MESSAGE,
                    detail=f"no answer within {attempt_timeout:.1f}s ({type(exc).__name__})",
                )
            ) from None
        except httpx.TransportError as exc:
            self._log_attempt(number, type(exc).__name__, started)
            raise _Retryable(
                ModelError(
                    FailureKind.UNAVAILABLE,
                    UNREACHABLE_MESSAGE,
                    detail=self._redact(f"network error: {type(exc).__name__}: {exc}"),
                )
            ) from None
        self._log_attempt(number, str(response.status_code), started)
        if response.status_code == 200:
            return await asyncio.to_thread(parse_answer, response.content)
        raise self._http_error(response)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _log_attempt(self, number: int, outcome: str, started: float) -> None:
        logger.info(
            "gemini %s attempt %d: %s in %.2fs",
            self.name,
            number,
            outcome,
            time.monotonic() - started,
        )

    def _http_error(self, response: httpx.Response) -> ModelError | _Retryable:
        """Classify a non-200 answer: a :class:`ModelError`, or a :class:`_Retryable`."""
        err = ServiceError(response)
        # services echo request data in messages now and then: never let the key through
        detail = self._redact(err.summary())
        status = err.status
        if status == 429:
            if err.daily_quota:
                return ModelError(FailureKind.RATE_LIMITED, DAILY_QUOTA_MESSAGE, detail=detail)
            return _Retryable(
                ModelError(
                    FailureKind.RATE_LIMITED,
                    rate_limited_message(err.retry_after),
                    detail=detail,
                ),
                retry_after=err.retry_after,
            )
        if status in RETRY_STATUSES:
            return _Retryable(
                ModelError(FailureKind.UNAVAILABLE, UNAVAILABLE_MESSAGE, detail=detail),
                retry_after=err.retry_after,
            )
        if status in (401, 403) or err.reason in ("API_KEY_INVALID", "API_KEY_EXPIRED"):
            return ModelError(FailureKind.AUTH, AUTH_MESSAGE, detail=detail)
        if status == 404:
            return ModelError(
                FailureKind.BAD_REQUEST, unknown_model_message(self.name), detail=detail
            )
        if status == 413 or "payload size exceeds" in err.message.lower():
            return ModelError(FailureKind.BAD_REQUEST, TOO_LARGE_MESSAGE, detail=detail)
        if err.code_name == "FAILED_PRECONDITION" and "location" in err.message.lower():
            return ModelError(FailureKind.BAD_REQUEST, REGION_MESSAGE, detail=detail)
        if 400 <= status < 500:
            return ModelError(FailureKind.BAD_REQUEST, BAD_REQUEST_MESSAGE, detail=detail)
        return ModelError(FailureKind.UNAVAILABLE, UNAVAILABLE_MESSAGE, detail=detail)


def generate_url(base_url: str, model: str) -> str:
    """``{base}/v1beta/models/{model}:generateContent``; a base may carry a proxy path
    prefix, a trailing slash, or already end in ``/v1beta``."""
    base = base_url.strip().rstrip("/")
    if not base.endswith("/v1beta"):
        base += "/v1beta"
    return f"{base}/models/{model}:generateContent"


if TYPE_CHECKING:
    _protocol_check: type[ImageModel] = GeminiModel
