"""ModelHttp, the call every provider makes, against a scripted server on loopback.

What a user would notice: whatever a service sends back — an endless body, a compression
bomb, an answer the provider's reader chokes on — the call ends in one short message and
never in a stray exception; waits grow and honour what the service asks; the key stays out
of every detail. Provider-specific readings are tested in test_gemini and test_openai_compat.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from bot.core.failures import FailureKind
from bot.models import http_policy as hp
from bot.models.base import AnswerSlot, Blob, ModelError, StoredBlob


class Script:
    """A loopback server answering each request with the next scripted response."""

    def __init__(self) -> None:
        self.responses: list[Callable[[], web.StreamResponse]] = []
        self.seen = 0
        self.port = 0
        #: each request's headers and body, in arrival order
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((dict(request.headers), await request.read()))
        self.seen += 1
        return self.responses.pop(0)() if self.responses else web.json_response({"ok": True})

    def then(self, status: int = 200, body: bytes = b"{}", **headers: str) -> None:
        self.responses.append(lambda: web.Response(status=status, body=body, headers=headers))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/call"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def script() -> AsyncIterator[Script]:
    server = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


def make_http(sleeps: Sleeps | None = None, **policy: Any) -> hp.ModelHttp:
    options: dict[str, Any] = {"jitter": 0.0, "backoff_base": 0.5}
    options.update(policy)
    return hp.ModelHttp(
        label="test model",
        secret="sk-test-SECRET-1234",
        policy=hp.CallPolicy(**options),
        sleep=sleeps or Sleeps(),
    )


def read_json(body: bytes) -> Any:
    return hp.decode_json(body)


def classify(answer: hp.ErrorAnswer) -> ModelError | hp.Retryable:
    return hp.classify_status(
        answer.status,
        detail=f"HTTP {answer.status}",
        retry_after=answer.retry_after,
        unknown_model=hp.unknown_model_message("m", "SOME_SETTING"),
    )


async def call(http: hp.ModelHttp, url: str, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"read": read_json, "classify": classify}
    options.update(kwargs)
    try:
        return await http.post(url, b"{}", {"content-type": "application/json"}, **options)
    finally:
        await http.aclose()


async def failure(http: hp.ModelHttp, url: str, **kwargs: Any) -> ModelError:
    with pytest.raises(ModelError) as info:
        await call(http, url, **kwargs)
    return info.value


# --------------------------------------------------------------------------- big answers


async def test_an_answer_declaring_too_many_bytes_is_refused(script: Script) -> None:
    script.then(body=b"x" * 5000)
    err = await failure(make_http(max_answer_bytes=1000), script.url)
    assert err.user_message == hp.MALFORMED_MESSAGE
    assert "5000" in err.detail


async def test_a_compression_bomb_is_stopped_at_the_cap(script: Script) -> None:
    bomb = gzip.compress(b"0" * 20_000_000)
    assert len(bomb) < 100_000
    script.then(body=bomb, **{"content-encoding": "gzip"})
    err = await failure(make_http(max_answer_bytes=1_000_000), script.url)
    assert err.user_message == hp.MALFORMED_MESSAGE
    assert "over 1000000 bytes" in err.detail
    assert script.seen == 1


async def test_an_answer_under_the_cap_is_read(script: Script) -> None:
    script.then(body=gzip.compress(json.dumps({"n": 1}).encode()), **{"content-encoding": "gzip"})
    assert await call(make_http(max_answer_bytes=1000), script.url) == {"n": 1}


# -------------------------------------------------------------------- readers that fail


async def test_a_reader_that_trips_over_the_body_gives_the_unreadable_message(
    script: Script,
) -> None:
    def careless(body: bytes) -> Any:
        return json.loads(body)["candidates"][0]

    err = await failure(make_http(), script.url, read=careless)
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.MALFORMED_MESSAGE
    assert "KeyError" in err.detail


async def test_an_unforeseen_exception_still_ends_as_a_model_error(script: Script) -> None:
    def broken(body: bytes) -> Any:
        return 1 / 0

    err = await failure(make_http(), script.url, read=broken)
    assert err.user_message == hp.INTERNAL_MESSAGE
    assert "ZeroDivisionError" in err.detail


async def test_a_classifier_that_fails_cannot_hide_the_http_error(script: Script) -> None:
    def broken(answer: hp.ErrorAnswer) -> ModelError:
        raise LookupError("oops")

    script.then(status=500)
    err = await failure(make_http(max_attempts=1), script.url, classify=broken)
    assert err.user_message == hp.UNAVAILABLE_MESSAGE
    assert "HTTP 500" in err.detail


async def test_a_reader_may_ask_for_another_attempt(script: Script) -> None:
    """Some relays answer 200 with an error inside; the reader says "retry"."""
    script.then(body=b'{"error": "upstream hiccup"}')

    def picky(body: bytes) -> Any:
        data = json.loads(body)
        if "error" in data:
            raise hp.Retryable(ModelError(FailureKind.UNAVAILABLE, hp.UNAVAILABLE_MESSAGE))
        return data

    sleeps = Sleeps()
    assert await call(make_http(sleeps), script.url, read=picky) == {"ok": True}
    assert script.seen == 2
    assert sleeps.calls == [0.5]


# ------------------------------------------------------------------------------ waiting


async def test_waits_grow_are_capped_and_jittered_within_bounds(script: Script) -> None:
    for _ in range(5):
        script.then(status=503)
    sleeps = Sleeps()
    http = make_http(sleeps, max_attempts=6, backoff_base=1.0, backoff_max=4.0, jitter=0.5)
    assert await call(http, script.url) == {"ok": True}
    assert len(sleeps.calls) == 5
    for wait, base in zip(sleeps.calls, [1, 2, 4, 4, 4], strict=True):
        assert base <= wait <= base + 0.5


async def test_retry_after_as_an_http_date_is_honoured(script: Script) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    script.then(status=429, **{"retry-after": format_datetime(when, usegmt=True)})
    sleeps = Sleeps()
    assert await call(make_http(sleeps), script.url) == {"ok": True}
    assert 25 <= sleeps.calls[0] <= 31


async def test_a_rate_limit_says_when_to_come_back(script: Script) -> None:
    script.then(status=429, **{"retry-after": "600"})
    err = await failure(make_http(budget=180), script.url)
    assert err.kind is FailureKind.RATE_LIMITED
    assert "about 10 minutes" in err.user_message
    assert script.seen == 1


# ------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("echoed", [b"sk-test-SECRET-1234", b"SK-TEST-SECRET-1234"])
async def test_a_key_echoed_by_the_service_is_masked_in_the_detail(
    script: Script, echoed: bytes
) -> None:
    def echoing(answer: hp.ErrorAnswer) -> ModelError:
        return ModelError(FailureKind.AUTH, hp.AUTH_MESSAGE, detail=answer.excerpt())

    script.then(status=401, body=b"<html>key " + echoed + b" is not valid</html>")
    err = await failure(make_http(), script.url, classify=echoing)
    assert err.detail == "<html>key [redacted] is not valid</html>"
    assert "SECRET" not in f"{err!r} {err.args}"


# ------------------------------------------------------------------------- reading bits


@pytest.mark.parametrize(
    "raw",
    [b"[" * 200_000, b'{"a": NaN}', b'{"a": -Infinity}', b"\xff\xfe{}", b"1" * 5000, b""],
)
def test_decode_json_raises_only_malformed_answer(raw: bytes) -> None:
    with pytest.raises(hp.MalformedAnswer):
        hp.decode_json(raw)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0), (0, 0), (1290, 1290), (12.0, 12), ("77", 77)]
)
def test_token_counts_that_make_sense(value: Any, expected: int) -> None:
    assert hp.token_count(value, "n") == expected


@pytest.mark.parametrize(
    "value", [-1, 10**12, float("inf"), float("nan"), 1.5, True, "1e3", "", [], {"n": 1}]
)
def test_token_counts_that_do_not(value: Any) -> None:
    with pytest.raises(hp.MalformedAnswer):
        hp.token_count(value, "n")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3, "about 5 seconds"),
        (41, "about 45 seconds"),
        (60, "about a minute"),
        (500, "about 9 minutes"),
        (3 * 3600, "about 3 hours"),
        (10**9, "about 11574 days"),
    ],
)
def test_waits_are_told_roughly(seconds: float, text: str) -> None:
    assert hp.humanize_seconds(seconds) == text


@pytest.mark.parametrize("value", ["soon", "9" * 40, "Mon, 99 Foo 2020 25:61:61 GMT", ""])
def test_a_retry_after_that_makes_no_sense_is_ignored(value: str) -> None:
    assert hp.parse_retry_after(value) is None


# ------------------------------------------------------------------------- writing bodies


def stored(data: bytes, reads: list[int] | None = None, *, size: int | None = None
           ) -> StoredBlob:
    """A stored picture that counts its reads."""

    async def load() -> bytes:
        if reads is not None:
            reads.append(len(data))
        return data

    return StoredBlob("image/png", len(data) if size is None else size, load)


async def test_pictures_written_into_the_body_read_back_as_the_same_json() -> None:
    picture, other = bytes(range(256)) * 50, b"\x89PNG\r\n\x1a\n" + b"\x00" * 97
    body = {"contents": [{"parts": [{"text": "make it red"},
                                    {"inlineData": {"mimeType": "image/png",
                                                    "data": hp.InlineBase64(Blob("image/png",
                                                                                 picture))}},
                                    {"image_url": {"url": hp.InlineBase64(
                                        stored(other), prefix="data:image/png;base64,")}}]}]}
    as_text = {"contents": [{"parts": [
        {"text": "make it red"},
        {"inlineData": {"mimeType": "image/png",
                        "data": base64.b64encode(picture).decode()}},
        {"image_url": {"url": "data:image/png;base64," + base64.b64encode(other).decode()}}]}]}
    length, chunks = await hp.json_payload(body).open()
    expected = json.dumps(as_text, separators=(",", ":")).encode()
    assert length == len(expected)  # known before a picture is read
    assert b"".join([chunk async for chunk in chunks]) == expected


@pytest.mark.parametrize("text", ["\x00", "\\u0000abc\\u0000", "\x00" + "0" * 16 + "\x00",
                                  'quotes " and \\ and 汉字'])
async def test_text_that_looks_like_a_gap_is_kept_as_it_was(text: str) -> None:
    body = {"a": text, "b": hp.InlineBase64(stored(b"pic")), "c": [text, hp.InlineBase64(
        stored(b""))]}
    assert json.loads(await hp.json_payload(body).read()) == {"a": text, "b": "cGlj",
                                                              "c": [text, ""]}


async def test_a_history_that_cannot_be_encoded_is_a_model_error() -> None:
    with pytest.raises(ModelError) as caught:
        await hp.encode_json(lambda: {"a": float("nan"), "b": hp.InlineBase64(stored(b"x"))})
    assert caught.value.kind is FailureKind.BAD_REQUEST
    with pytest.raises(ModelError):
        await hp.encode_json(lambda: {"a": object()})


async def test_stored_pictures_are_read_as_the_request_goes_out_and_again_on_a_retry(
    script: Script,
) -> None:
    reads: list[int] = []
    picture = bytes(range(256)) * 1200  # 300 kB: more than one socket write
    payload = await hp.encode_json(
        lambda: {"parts": [{"data": hp.InlineBase64(stored(picture, reads))}]})
    assert reads == []  # laid out, nothing read yet
    script.then(status=503)
    script.then(body=b'{"ok": 1}')
    http = make_http()
    try:
        answer = await http.post(script.url, payload, {"content-type": "application/json"},
                                 read=read_json, classify=classify)
    finally:
        await http.aclose()
    assert answer == {"ok": 1}
    assert reads == [len(picture), len(picture)]
    expected = b'{"parts":[{"data":"' + base64.b64encode(picture) + b'"}]}'
    for headers, body in script.received:
        assert body == expected
        assert headers["Content-Length"] == str(len(expected))
        assert "Transfer-Encoding" not in headers


async def test_a_stored_picture_that_changed_size_ends_the_call_in_a_clear_error(
    script: Script,
) -> None:
    payload = hp.json_payload({"data": hp.InlineBase64(stored(b"12345", size=4))})
    http = make_http()
    with pytest.raises(ModelError) as caught:
        try:
            await http.post(script.url, payload, {}, read=read_json, classify=classify)
        finally:
            await http.aclose()
    assert caught.value.user_message == hp.INTERNAL_MESSAGE


# ------------------------------------------------------------------------- answer slots


async def test_waiting_for_an_answer_slot_does_not_time_out_a_paid_call(script: Script) -> None:
    places = asyncio.Semaphore(0)  # every place taken, for now
    slot = AnswerSlot(places)
    script.then(body=b'{"ok": 1}')
    http = make_http(timeout=0.3)
    call_done = asyncio.ensure_future(
        http.post(script.url, b"{}", {}, read=read_json, classify=classify, slot=slot))
    await asyncio.sleep(0.6)  # twice the attempt's timeout, waiting for a place
    assert not call_done.done() and script.seen == 1
    places.release()
    try:
        assert await call_done == {"ok": 1}
    finally:
        await http.aclose()
    assert script.seen == 1, "the answer was paid for once: no second attempt"
    assert places.locked(), "the answer keeps its place until the caller stored it"
    slot.give_back()
    assert not places.locked()


async def test_an_answer_of_no_use_gives_its_place_back(script: Script) -> None:
    places = asyncio.Semaphore(1)
    script.then(body=b"not json")
    with pytest.raises(ModelError):
        await call(make_http(), script.url, slot=AnswerSlot(places))
    assert not places.locked()
    script.then(status=503)  # an error answer never takes a place, a retry reads the next
    script.then(body=b'{"n": 2}')
    slot = AnswerSlot(places)
    assert await call(make_http(), script.url, slot=slot) == {"n": 2}
    assert places.locked()
