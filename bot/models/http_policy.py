"""The HTTP call every model provider makes: one policy for retries, budget and failures.

Gemini's own API and the relays in front of it fail in the same ways — timeouts, 429s
that say how long to wait, 5xx, proxies answering with HTML or garbage — and a chat user
should read the same short line whichever one the operator chose. So a provider supplies
only its request and two pure functions (read a 2xx body, classify an error answer), and
this module does the rest:

- retries with exponential backoff and jitter (tenacity), waiting as long as the service
  asks (``Retry-After``, or what the provider read from the body, e.g. ``RetryInfo``);
- a total budget across attempts and waits, and no attempt started that cannot finish in
  what is left of it;
- answers read with a size cap, everything unreadable — corrupt compression, non-UTF-8,
  absurd numbers, JSON nested past the recursion limit — turned into one clear
  :class:`ModelError`; no other exception type leaves :meth:`ModelHttp.post`;
- the API key never in a log line, an error detail or a user message.
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
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from bot.core.config import Settings
from bot.core.failures import FailureKind
from bot.kit.i18n import N_, _, ngettext
from bot.models.base import (
    AnswerSlot,
    GenerateRequest,
    ModelError,
    Picture,
    image_cap_for,
)
from bot.models.key_pool import DEFAULT_REST, Key, KeyFault, KeyPool

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
#: the headers of a request: fixed, or made for the key an attempt uses
Headers = Mapping[str, str] | Callable[[Key], Mapping[str, str]]

#: statuses worth another attempt: timeouts, rate limits and transient server trouble
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
#: no real call reports more tokens than this; a bigger number is a broken answer
MAX_TOKEN_COUNT: Final = 1_000_000_000

# ---------------------------------------------------------------------------------------
# What users read. Short, human, no codes they cannot act on, never a secret.

TEXT_ONLY_MESSAGE = N_("The model answered in words but didn't make a picture.")
EMPTY_MESSAGE = N_("The model returned an empty answer. Please try again.")
MALFORMED_MESSAGE = N_("The model service sent an answer the bot couldn't read. Please try "
                       "again.")
AUTH_MESSAGE = N_(
    "The bot's key for the model service was not accepted. Ask the bot's operator to check it."
)
CREDITS_MESSAGE = N_(
    "The bot's account with the model service has run out of credit. "
    "Ask the bot's operator to top it up."
)
BAD_REQUEST_MESSAGE = N_(
    "The model service rejected this request. Try rephrasing it, or /new to start over."
)
TOO_LARGE_MESSAGE = N_("The pictures are too large to send to the model. Try fewer or "
                       "smaller ones.")
REGION_MESSAGE = N_("The model service is not available from where the bot runs.")
UNAVAILABLE_MESSAGE = N_("The model service is not answering right now. Please try again in "
                         "a few minutes.")
TIMEOUT_MESSAGE = N_("The model took too long to answer. Please try again in a few minutes.")
UNREACHABLE_MESSAGE = N_("The bot could not reach the model service. Please try again in a "
                         "few minutes.")
DAILY_QUOTA_MESSAGE = N_(
    "The bot has used up its daily quota for the model. Please try again tomorrow."
)
INTERNAL_MESSAGE = N_("Something went wrong while talking to the model. Please try again.")


def unknown_model_message(model: str, setting: str) -> str:
    return _("The model “{model}” is unknown to the service. Ask the bot's operator to check "
             "{setting}.").format(model=model, setting=setting)


def rate_limited_message(wait: float | None) -> str:
    if wait:
        return _("The model is getting too many requests right now. Please try again in "
                 "{wait}.").format(wait=humanize_seconds(wait))
    return _("The model is getting too many requests right now. Please try again in a "
             "minute or two.")


def humanize_seconds(seconds: float) -> str:
    """'about 40 seconds', 'about 3 minutes' — roughly, because that is all users need."""
    if seconds < 60:
        count = max(5, math.ceil(seconds / 5) * 5)
        return ngettext("about {count} second", "about {count} seconds", count).format(
            count=count)
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return ngettext("about a minute", "about {count} minutes", minutes).format(
            count=minutes)
    hours = round(seconds / 3600)
    if hours > 48:
        days = round(hours / 24)
        return ngettext("about a day", "about {count} days", days).format(count=days)
    return ngettext("about an hour", "about {count} hours", max(1, hours)).format(
        count=max(1, hours))


# ---------------------------------------------------------------------------------------
# Reading answers without trusting them


class MalformedAnswer(ValueError):
    """The service (or a proxy) sent something that is not a valid answer."""


def _no_constants(name: str) -> Any:
    raise MalformedAnswer(f"JSON contains {name}")


def decode_json(raw: bytes) -> Any:
    """Parse a body, raising only :class:`MalformedAnswer` whatever the bytes are."""
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except MalformedAnswer:
        raise
    except RecursionError:
        raise MalformedAnswer("JSON is nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, int limits
        raise MalformedAnswer(f"answer is not JSON: {str(exc)[:200]}") from None




def b64decode_strict(value: Any) -> bytes:
    """Decode standard or URL-safe base64, refusing anything else (no silent garbage).

    The standard alphabet is tried first with the decoder's own validation (a separate
    regular-expression pass over a 2.4 MB answer cost more than the decoding itself);
    only a string that fails it is tried again as URL-safe base64, validated the same way.
    """
    if not isinstance(value, str):
        raise MalformedAnswer(f"base64 data is {type(value).__name__}, not a string")
    if not value.isascii():
        raise MalformedAnswer("base64 data contains invalid characters")
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        pass
    if "+" in padded or "/" in padded:
        raise MalformedAnswer("base64 data contains invalid characters")
    try:
        return base64.b64decode(padded.translate(_URLSAFE_TO_STD), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedAnswer(f"invalid base64 data: {exc}") from None


_URLSAFE_TO_STD = str.maketrans("-_", "+/")


def token_count(value: Any, field: str) -> int:
    """A token count from an answer: absent is 0; anything but a sane count is malformed."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        count: int | None = value
    elif isinstance(value, float):
        count = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        digits = value.isascii() and value.isdigit() and len(value) <= 12
        count = int(value) if digits else None
    else:
        count = None
    if count is None or not 0 <= count <= MAX_TOKEN_COUNT:
        raise MalformedAnswer(f"{field} is not a token count in range")
    return count


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 9 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class ErrorAnswer:
    """A non-2xx answer, for a provider's classifier; ``json`` is None when unreadable."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    @cached_property
    def json(self) -> Any:
        try:
            return decode_json(self.body)
        except MalformedAnswer:
            return None

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))

    def excerpt(self) -> str:
        """The start of a body that is not JSON (an HTML page from a proxy), for logs."""
        return self.body[:200].decode("utf-8", "replace").strip()


class Retryable(Exception):
    """One failed attempt that may be worth repeating; ``error`` is what users get."""

    def __init__(self, error: ModelError, *, retry_after: float | None = None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.retry_after = retry_after


#: a classifier's verdict on an error answer
Verdict = ModelError | Retryable | KeyFault


def classify_status(
    status: int, *, detail: str, retry_after: float | None, unknown_model: str
) -> ModelError | Retryable:
    """What an HTTP status means when the body says nothing more specific."""
    if status == 429:
        return Retryable(
            ModelError(FailureKind.RATE_LIMITED, rate_limited_message(retry_after), detail=detail),
            retry_after=retry_after,
        )
    if status in RETRY_STATUSES:
        return Retryable(
            ModelError(FailureKind.UNAVAILABLE, UNAVAILABLE_MESSAGE, detail=detail),
            retry_after=retry_after,
        )
    if status in (401, 403):
        return ModelError(FailureKind.AUTH, AUTH_MESSAGE, detail=detail)
    if status == 402:
        return ModelError(FailureKind.AUTH, CREDITS_MESSAGE, detail=detail)
    if status == 404:
        return ModelError(FailureKind.BAD_REQUEST, unknown_model, detail=detail)
    if status == 413:
        return ModelError(FailureKind.BAD_REQUEST, TOO_LARGE_MESSAGE, detail=detail)
    if 400 <= status < 500:
        return ModelError(FailureKind.BAD_REQUEST, BAD_REQUEST_MESSAGE, detail=detail)
    return ModelError(FailureKind.UNAVAILABLE, UNAVAILABLE_MESSAGE, detail=detail)


def malformed(detail: str, **kwargs: Any) -> ModelError:
    return ModelError(FailureKind.UNAVAILABLE, MALFORMED_MESSAGE, detail=detail, **kwargs)


@dataclass(frozen=True, slots=True)
class InlineBase64:
    """A picture that goes into a JSON body as one base64 string, ``prefix`` first (a data
    URI's ``data:image/png;base64,``).

    :func:`json_payload` leaves a gap for it in the encoded JSON, and the picture is read
    and base64-encoded into that gap only as the body goes out. Put through the JSON
    encoder as text instead, each picture of a request was scanned character by character
    and copied twice more (for three 1.3 MB pictures, four times the cost of the base64
    encoding itself), and the whole body was held until the model answered.
    """

    picture: Picture
    prefix: str = ""

    @property
    def length(self) -> int:
        return len(_json_text(self.prefix)) + 4 * math.ceil(self.picture.size / 3)

    async def encoded(self) -> bytes:
        # on the event loop: base64 holds the GIL, so a worker thread would add a hop
        # and a queue without running anything alongside
        return _json_text(self.prefix) + base64.b64encode(await self.picture.read())


def _json_text(text: str) -> bytes:
    """``text`` as it reads inside a JSON string."""
    return json.dumps(text)[1:-1].encode()


#: encoded JSON, with gaps where pictures go
Pieces = tuple[bytes | InlineBase64, ...]


def lay_out(body: Any) -> Pieces:
    """Compact JSON of ``body``, every :class:`InlineBase64` in it left as a gap."""
    inline: list[InlineBase64] = []
    # NUL cannot reach the output unescaped, and the random marker cannot be guessed, so
    # no text of the request can pose as a gap
    marker = f"\x00{secrets.token_hex(8)}\x00"

    def placeholder(value: object) -> str:
        if isinstance(value, InlineBase64):
            inline.append(value)
            return marker
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=placeholder)
    if not inline:
        return (text.encode(),)
    pieces = text.encode().split(_json_text(marker))
    joined: list[bytes | InlineBase64] = [pieces[0]]
    for value, after in zip(inline, pieces[1:], strict=True):
        joined += [value, after]
    return tuple(p for p in joined if p != b"")


async def _stream(pieces: Pieces) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece if isinstance(piece, bytes) else await piece.encoded()


class Payload:
    """A JSON request body that is laid out, and has its pictures read and encoded, only
    as it goes out.

    Its length is known before any picture is read (base64 has a fixed length), so the
    body is sent with a ``Content-Length`` while each picture is read, encoded, sent and
    dropped in turn. Between attempts it keeps only ``body``, whose texts are the
    request's own: a turn waiting on the model holds neither its pictures nor the encoded
    JSON, however long the model takes. Each attempt lays the body out again.
    """

    def __init__(self, body: Any, pieces: Pieces | None = None) -> None:
        self._body = body
        self._pieces = pieces  # laid out already, for the first attempt

    async def open(self) -> tuple[int, AsyncIterator[bytes]]:
        """The body's length, and its chunks as they should be sent."""
        pieces, self._pieces = self._pieces, None
        if pieces is None:
            pieces = await asyncio.to_thread(lay_out, self._body)
        length = sum(len(p) if isinstance(p, bytes) else p.length for p in pieces)
        return length, _stream(pieces)

    async def read(self) -> bytes:
        """The whole body at once (a small request, a test)."""
        _, chunks = await self.open()
        return b"".join([chunk async for chunk in chunks])


def json_payload(body: Any) -> Payload:
    """``body`` as a :class:`Payload`, laid out now (so a body that cannot be encoded
    raises here)."""
    return Payload(body, lay_out(body))


async def encode_json(build: Callable[[], Any]) -> Payload:
    """The body of ``build()`` as a :class:`Payload`, first laid out in a worker thread
    (Gemini 3's signatures alone can be megabytes). A history that cannot be encoded is a
    :class:`ModelError`."""

    def encode() -> Payload:
        return json_payload(build())

    try:
        return await asyncio.to_thread(encode)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelError(
            FailureKind.BAD_REQUEST,
            INTERNAL_MESSAGE,
            detail=f"request could not be encoded: {type(exc).__name__}: {exc}"[:1000],
        ) from None


# ---------------------------------------------------------------------------------------
# The call


@dataclass(frozen=True)
class CallPolicy:
    """How long and how often one model call may try.

    Waits between attempts are ``backoff_base * 2**(n-1)`` capped at ``backoff_max``, plus
    up to ``jitter`` random seconds, or what the service asked for. Another attempt is
    only started if ``min(timeout, shortest_attempt)`` seconds of the budget will be left
    after the wait: no image model answers faster, so with less time it could only time
    out — and the user would wait for nothing.
    """

    timeout: float = 120.0
    budget: float = 180.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0
    shortest_attempt: float = 1.0
    #: a bigger answer is refused rather than read into memory
    max_answer_bytes: int = 256 * 1024 * 1024
    #: connections kept open between calls: an image model takes seconds, so a busy bot
    #: has many calls under way at once and should not reconnect for each
    connections: int = 64

    @property
    def least_attempt_time(self) -> float:
        return min(self.timeout, self.shortest_attempt)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallPolicy:
        """The operator's limits, the same for every provider (``GEMINI_*`` by history)."""
        return cls(
            timeout=settings.gemini_timeout,
            budget=settings.gemini_retry_budget,
            max_attempts=settings.gemini_max_attempts,
            connections=settings.chatbrush_concurrent_turns,
        )


class _AnswerTooLarge(Exception):
    pass


@dataclass
class _Rested:
    """Whether a call's next attempt follows a wait for a resting key."""

    waited: bool = False


class ModelHttp:
    """One pooled HTTP client and the call policy, shared by every call of one model.

    ``label`` names the model in log lines (``gemini gemini-2.5-flash-image``); ``secret``
    is masked wherever it could surface; ``sleep`` is how waits are waited, so tests can
    run retries without sleeping for real. With ``keys``, each attempt takes a key of
    the pool (see :meth:`post`), and every key of it is masked; ``model`` is what a
    resting key rests for.
    """

    def __init__(
        self,
        *,
        label: str,
        secret: str,
        policy: CallPolicy,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
        keys: KeyPool | None = None,
        model: str = "",
    ) -> None:
        self.label = label
        self.policy = policy
        self.keys = keys
        self.model = model
        self._secret = secret
        self._sleep: Sleep = sleep or asyncio.sleep
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(policy.timeout),
            # No cap on connections: a request waiting in the pool would spend its own
            # timeout there, give up while the service still works on an earlier one, and
            # be paid for twice. How many calls run is capped by the turns a process runs
            # (and CHATBRUSH_MAX_CONCURRENT_CALLS); this many stay open between them.
            limits=httpx.Limits(max_connections=None,
                                max_keepalive_connections=policy.connections),
            headers={"user-agent": "chatbrush"},
        )

    def __repr__(self) -> str:  # never shows the key
        return f"ModelHttp({self.label!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def redact(self, text: str) -> str:
        """``text`` without any key, in any case (services echo it changed)."""
        if self.keys is not None:
            text = self.keys.redact(text)
        if not self._secret:
            return text
        return re.sub(re.escape(self._secret), "[redacted]", text, flags=re.IGNORECASE)

    async def post(
        self,
        url: str,
        payload: bytes | Payload,
        headers: Headers,
        *,
        read: Callable[[bytes], T],
        classify: Callable[[ErrorAnswer], Verdict],
        slot: AnswerSlot | None = None,
    ) -> T:
        """POST ``payload`` until ``read`` accepts an answer, or raise :class:`ModelError`.

        ``read`` runs in a worker thread (answers can be megabytes of base64) and raises
        :class:`ModelError` or :class:`Retryable`; ``classify`` turns a non-2xx answer
        into one of them. Whatever else goes wrong still ends as a :class:`ModelError`.
        ``slot`` is taken before a successful answer's body is read (waiting for it does
        not count against the attempt's timeout) and is still held when the answer is
        returned; an answer that is not returned gives it back.

        ``headers`` made per key (with a pool) send each attempt with a key of the pool:
        a key that answers for itself (its quota, or refused: a :class:`KeyFault` from
        ``classify``) is set aside and the same attempt goes at once to another free key,
        not counted against the retry budget; only the last free key's failure is.
        """
        deadline = time.monotonic() + self.policy.budget
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Retryable),
            wait=self._wait,
            stop=lambda state: self._stop(state, deadline),
            sleep=self._sleep,
            reraise=True,
        )
        rested = _Rested()
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    try:
                        if callable(headers):
                            return await self._keyed_attempt(url, payload, headers, number,
                                                             deadline, read, classify, slot,
                                                             rested)
                        return await self._attempt(url, payload, headers, number, deadline,
                                                   read, classify, slot)
                    except BaseException:
                        if slot is not None:
                            slot.give_back()  # an answer not returned holds no place
                        raise
        except (Retryable, KeyFault) as failed:
            raise self._clean(failed.error) from None
        except ModelError as error:
            raise self._clean(error) from None
        except Exception as exc:  # a bug, or a library failing in a way we did not foresee
            logger.error("%s: unexpected %s", self.label, self.redact(repr(exc))[:500])
            raise ModelError(
                FailureKind.UNAVAILABLE,
                INTERNAL_MESSAGE,
                detail=self.redact(f"unexpected {type(exc).__name__}: {exc}")[:1000],
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _clean(self, error: ModelError) -> ModelError:
        """The same error with the key masked out of its detail (services echo requests)."""
        detail = self.redact(error.detail)
        if detail == error.detail:
            return error
        return ModelError(
            error.kind, error.user_message, detail=detail, text=error.text, usage=error.usage
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        policy = self.policy
        jitter = random.uniform(0, policy.jitter) if policy.jitter > 0 else 0.0
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return exc.retry_after + jitter
        backoff = policy.backoff_base * 2 ** (state.attempt_number - 1)
        return min(policy.backoff_max, backoff) + jitter

    def _stop(self, state: RetryCallState, deadline: float) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        remaining = deadline - time.monotonic()
        needed = state.upcoming_sleep + self.policy.least_attempt_time
        if needed <= remaining:
            return False
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            logger.info(
                "%s: service asks to wait %.1fs, over the remaining budget %.1fs",
                self.label,
                exc.retry_after,
                max(0.0, remaining),
            )
        else:
            logger.info(
                "%s: %.1fs of the budget left, too little for another attempt",
                self.label,
                max(0.0, remaining),
            )
        return True

    async def _keyed_attempt(
        self,
        url: str,
        payload: bytes | Payload,
        headers: Callable[[Key], Mapping[str, str]],
        number: int,
        deadline: float,
        read: Callable[[bytes], T],
        classify: Callable[[ErrorAnswer], Verdict],
        slot: AnswerSlot | None,
        rested: _Rested,
    ) -> T:
        """One attempt of the call, moved to another key each time a key answers for
        itself while another is free."""
        if self.keys is None:
            raise ValueError("headers made per key need a key pool")
        while True:
            if rested.waited:  # the retry waited for a resting key already
                rested.waited = False
                key = self.keys.earliest(self.model)
            else:
                key = await self._free_key(self.keys, deadline)
            try:
                answer = await self._attempt(url, payload, headers(key), number, deadline,
                                             read, classify, slot)
            except KeyFault as fault:
                self.keys.record(key, failed=True)
                if fault.refused:
                    if not self.keys.take_out(key, fault.error.detail):
                        raise fault.error from None  # the last live key: nothing to switch to
                else:
                    self.keys.rest(key, self.model, max(1.0, fault.rest or DEFAULT_REST))
                if self.keys.has_free(self.model):
                    continue  # the call is fine: another key takes it at once
                if fault.retry:
                    rested.waited = True
                    raise Retryable(fault.error, retry_after=fault.rest) from None
                raise fault.error from None
            except BaseException:
                self.keys.record(key, failed=True)
                raise
            self.keys.record(key, failed=False)
            return answer

    async def _free_key(self, keys: KeyPool, deadline: float) -> Key:
        """A free key; when all rest, the first to be free, if it is free in time."""
        key = keys.choose(self.model)
        if key is not None:
            return key
        wait = keys.free_in(self.model)
        if wait + self.policy.least_attempt_time > deadline - time.monotonic():
            raise ModelError(FailureKind.RATE_LIMITED, rate_limited_message(wait),
                             detail=f"every key rests for {self.model}; the first for "
                                    f"{wait:.1f}s more")
        logger.info("%s: every key rests, waiting %.1fs for the first", self.label, wait)
        await self._sleep(wait)
        return keys.earliest(self.model)

    async def _attempt(
        self,
        url: str,
        payload: bytes | Payload,
        headers: Mapping[str, str],
        number: int,
        deadline: float,
        read: Callable[[bytes], T],
        classify: Callable[[ErrorAnswer], Verdict],
        slot: AnswerSlot | None,
    ) -> T:
        attempt_timeout = min(self.policy.timeout, max(0.001, deadline - time.monotonic()))
        started = time.monotonic()
        try:
            async with asyncio.timeout(attempt_timeout) as limit:

                async def take_slot() -> None:
                    # the wait is the bot's own: it must not time out a paid call
                    if slot is None:
                        return
                    loop = asyncio.get_running_loop()
                    left = (limit.when() or loop.time()) - loop.time()
                    limit.reschedule(None)
                    await slot.take()
                    limit.reschedule(loop.time() + max(0.0, left))

                status, answer_headers, body = await self._exchange(
                    url, payload, headers, attempt_timeout, take_slot
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            self._log_attempt(number, "timeout", started)
            raise Retryable(
                ModelError(
                    FailureKind.UNAVAILABLE,
                    TIMEOUT_MESSAGE,
                    detail=f"no answer within {attempt_timeout:.1f}s ({type(exc).__name__})",
                )
            ) from None
        except httpx.DecodingError as exc:
            self._log_attempt(number, "undecodable body", started)
            raise malformed(f"answer body could not be decoded: {exc}") from None
        except _AnswerTooLarge as exc:
            self._log_attempt(number, "answer too large", started)
            raise malformed(str(exc)) from None
        except httpx.TransportError as exc:
            self._log_attempt(number, type(exc).__name__, started)
            raise Retryable(
                ModelError(
                    FailureKind.UNAVAILABLE,
                    UNREACHABLE_MESSAGE,
                    detail=self.redact(f"network error: {type(exc).__name__}: {exc}"),
                )
            ) from None
        self._log_attempt(number, str(status), started)
        return await _outcome(status, body, answer_headers, read, classify)

    async def _exchange(
        self, url: str, payload: bytes | Payload, headers: Mapping[str, str], seconds: float,
        before_body: Callable[[], Awaitable[None]],
    ) -> tuple[int, httpx.Headers, bytes]:
        """Send and read the whole answer, refusing one over ``max_answer_bytes``;
        ``before_body`` is awaited before a successful answer's body is read.

        ``seconds`` bounds httpx's own connect/read waits; the caller's
        ``asyncio.timeout`` bounds the whole exchange."""
        limit = self.policy.max_answer_bytes
        sent = dict(headers)
        content: bytes | AsyncIterator[bytes] = payload if isinstance(payload, bytes) else b""
        if isinstance(payload, Payload):
            length, content = await payload.open()
            sent["content-length"] = str(length)
        async with self._client.stream(
            "POST", url, content=content, headers=sent, timeout=httpx.Timeout(seconds)
        ) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _AnswerTooLarge(f"answer declares {declared} bytes, over {limit}")
            if 200 <= response.status_code < 300:
                await before_body()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _AnswerTooLarge(f"answer is over {limit} bytes")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    def _log_attempt(self, number: int, outcome: str, started: float) -> None:
        logger.info(
            "%s attempt %d: %s in %.2fs",
            self.label,
            number,
            outcome,
            time.monotonic() - started,
        )


def _read_safely(read: Callable[[bytes], T], body: bytes) -> T:
    """Run a provider's reader; anything but its own verdict means the body was bad."""
    try:
        return read(body)
    except (ModelError, Retryable):
        raise
    except MalformedAnswer as exc:
        raise malformed(str(exc)) from None
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise malformed(f"answer could not be read: {type(exc).__name__}: {exc}"[:1000]) from None


# ---------------------------------------------------------------------------------------
# What every HTTP image model shares


def model_options(settings: Settings) -> dict[str, Any]:
    """The settings every provider's model takes alike, as constructor arguments."""
    return {
        "policy": CallPolicy.from_settings(settings),
        "aspect_ratio": settings.gemini_aspect_ratio,
        "image_size": settings.gemini_image_size,
        "max_input_images": settings.chatbrush_max_input_images,
    }


class HttpImageModel:
    """The part of an image model that does not depend on the wire format: its name and
    limits, its :class:`ModelHttp`, and how a request becomes a call.

    ``model_setting`` is the variable an operator should check if the service does not
    know the model; ``client`` may be borrowed (it is then left open), ``sleep`` is how
    waits are waited.
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        secret: str,
        policy: CallPolicy,
        aspect_ratio: str | None,
        image_size: str | None,
        max_input_images: int | None,
        model_setting: str,
        client: httpx.AsyncClient | None,
        sleep: Sleep | None,
        keys: KeyPool | None = None,
    ) -> None:
        if not model:
            raise ValueError("model name is empty")
        self.name = model
        self.max_input_images = max_input_images or image_cap_for(model)
        self.aspect_ratio = aspect_ratio
        self.image_size = image_size
        self.policy = policy
        self.model_setting = model_setting
        self._http = ModelHttp(
            label=f"{provider} {model}", secret=secret, policy=policy, client=client, sleep=sleep,
            keys=keys, model=model,
        )

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(name={self.name!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        request: GenerateRequest,
        url: str,
        headers: Headers,
        *,
        body: Callable[[GenerateRequest], Any],
        read: Callable[[bytes], T],
        classify: Callable[[ErrorAnswer], Verdict],
    ) -> T:
        if not request.contents:
            raise ModelError(FailureKind.BAD_REQUEST, "There is nothing to send to the model.")
        payload = await encode_json(lambda: body(request))
        if request.on_send is not None:
            await request.on_send()
        return await self._http.post(url, payload, headers, read=read, classify=classify,
                                     slot=request.answer_slot)


async def _outcome(status: int, body: bytes, headers: Mapping[str, str],
                   read: Callable[[bytes], T], classify: Callable[[ErrorAnswer], Verdict]) -> T:
    """A 2xx answer read off the event loop; anything else, raised as the error the
    provider's classifier makes of it (a classifier that fails is an outage, not a crash)."""
    if 200 <= status < 300:
        return await asyncio.to_thread(_read_safely, read, body)
    try:
        outcome = classify(ErrorAnswer(status, body, headers))
    except Exception as exc:
        outcome = ModelError(
            FailureKind.UNAVAILABLE,
            UNAVAILABLE_MESSAGE,
            detail=f"HTTP {status}; classifier failed: {type(exc).__name__}",
        )
    raise outcome
