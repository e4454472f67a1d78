"""GeminiModel against the fake Gemini server, over real httpx on loopback.

What a user would notice: the right request reaches the service, multi-turn edits keep
working on Gemini 3 (signatures replayed verbatim), every refusal or failure turns into
a short human message, transient trouble is retried within bounds, and the API key
never shows up anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.core.config import SettingsError, load_settings
from bot.core.failures import FailureKind
from bot.models import http_policy as hp
from bot.models.base import (
    Blob,
    Content,
    GenerateRequest,
    GenerateResult,
    ModelError,
    Part,
)
from bot.models.gemini import GeminiModel, part_from_json, part_to_json
from bot.models.http_policy import CallPolicy
from tests.fakes.gemini import FakeGemini, make_png

FLASH = "gemini-2.5-flash-image"
PRO3 = "gemini-3-pro-image-preview"
FIXTURES = Path(__file__).parent / "fixtures"


class SleepRecorder:
    """Stands in for asyncio.sleep so retries run instantly and their waits are visible."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server


ModelFactory = Callable[..., GeminiModel]
POLICY_FIELDS = {f.name for f in fields(CallPolicy)}


@pytest.fixture
async def make_model(fake: FakeGemini) -> AsyncIterator[ModelFactory]:
    created: list[GeminiModel] = []

    def factory(**kwargs: Any) -> GeminiModel:
        """A model on the fake; CallPolicy fields (``budget=``, ``jitter=``…) may be given
        alongside the model's own arguments."""
        limits: dict[str, Any] = {"jitter": 0.0, "backoff_base": 0.01}
        limits.update({k: kwargs.pop(k) for k in POLICY_FIELDS & kwargs.keys()})
        options: dict[str, Any] = {
            "api_key": fake.api_key,
            "model": FLASH,
            "base_url": fake.base_url,
            "sleep": SleepRecorder(),
            "policy": CallPolicy(**limits),
        }
        options.update(kwargs)
        model = GeminiModel(**options)
        created.append(model)
        return model

    yield factory
    for model in created:
        await model.aclose()


def user(text: str | None = None, *images: bytes) -> Content:
    parts = [Part(text=text)] if text is not None else []
    parts += [Part(image=Blob("image/png", data)) for data in images]
    return Content("user", tuple(parts))


def request(*contents: Content, **kwargs: Any) -> GenerateRequest:
    return GenerateRequest(contents=contents, **kwargs)


async def fails(model: GeminiModel, req: GenerateRequest) -> ModelError:
    with pytest.raises(ModelError) as info:
        await model.generate(req)
    return info.value


def pixel(png: bytes, xy: tuple[int, int] = (5, 7)) -> tuple[int, ...]:
    with Image.open(io.BytesIO(png)) as img:
        value = img.convert("RGB").getpixel(xy)
    assert isinstance(value, tuple)
    return value


# --------------------------------------------------------------------------- request shape


async def test_request_is_camelcase_with_key_in_header_and_image_config(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    model = make_model(aspect_ratio="16:9", image_size="2K")
    photo = make_png(40, 30, seed=3)

    result = await model.generate(request(user("make the sky purple", photo)))

    sent = fake.last
    assert sent.path == f"/v1beta/models/{FLASH}:generateContent"
    assert sent.api_key == fake.api_key
    assert sent.query == {}
    assert sent.headers["content-type"].startswith("application/json")
    assert sent.json == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "make the sky purple"},
                    {
                        "inlineData": {
                            "mimeType": "image/png",
                            "data": base64.b64encode(photo).decode(),
                        }
                    },
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        },
    }
    # the fake "edits" by inverting: the picture we got back is the edit of ours, at the
    # size and shape asked for
    (image,) = result.images
    assert image.mime_type == "image/png"
    assert pixel(image.data, (0, 0)) == tuple(255 - c for c in pixel(photo, (0, 0)))
    with Image.open(io.BytesIO(image.data)) as answered:
        assert answered.size == (2736, 1536)  # 2K at 16:9
    assert result.text == "Here is the result for: make the sky purple"
    usage = fake.answers[0]["usageMetadata"]
    assert result.usage.prompt_tokens == usage["promptTokenCount"] > 0
    assert result.usage.output_tokens == usage["candidatesTokenCount"] > 0
    assert result.usage.total_tokens == usage["totalTokenCount"]
    assert result.model_version == FLASH


async def test_no_image_config_unless_asked_and_request_overrides_model(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    plain = make_model()
    await plain.generate(request(user("a cat")))
    assert fake.last.generation_config == {"responseModalities": ["TEXT", "IMAGE"]}

    wide = make_model(aspect_ratio="16:9")
    await wide.generate(request(user("a cat"), aspect_ratio="1:1"))
    assert fake.last.generation_config["imageConfig"] == {"aspectRatio": "1:1"}


@pytest.mark.parametrize(
    ("suffix", "prefix"),
    [
        ("/", ""),
        ("/v1beta", ""),
        ("/proxy/gemini", "/proxy/gemini"),
        ("/proxy/gemini/", "/proxy/gemini"),
    ],
)
async def test_base_url_may_have_trailing_slash_or_proxy_prefix(
    fake: FakeGemini, make_model: ModelFactory, suffix: str, prefix: str
) -> None:
    model = make_model(base_url=fake.base_url + suffix)
    result = await model.generate(request(user("a dog")))
    assert result.images
    assert fake.last.prefix == prefix
    assert fake.last.model == FLASH


# --------------------------------------------------------------------------- native relays


@pytest.mark.parametrize(
    ("scheme", "sent"),
    [("authorization", "{key}"), ("bearer", "Bearer {key}")],
)
async def test_a_relay_that_reads_the_key_from_authorization(scheme: str, sent: str) -> None:
    async with FakeGemini(auth=scheme, api_key="relay-key-123456") as relay:
        model = GeminiModel(
            api_key=relay.api_key, model=FLASH, base_url=relay.base_url, auth_header=scheme
        )
        try:
            result = await model.generate(request(user("a lighthouse")))
        finally:
            await model.aclose()
    assert result.images
    assert relay.last.headers["authorization"] == sent.format(key=relay.api_key)
    assert "x-goog-api-key" not in relay.last.headers
    assert relay.last.query == {}


async def test_googles_header_is_refused_by_an_authorization_relay() -> None:
    async with FakeGemini(auth="bearer") as relay:
        model = GeminiModel(api_key=relay.api_key, model=FLASH, base_url=relay.base_url)
        try:
            err = await fails(model, request(user("a lighthouse")))
        finally:
            await model.aclose()
    assert relay.last.status == 401
    assert err.kind is FailureKind.AUTH
    assert err.user_message == hp.AUTH_MESSAGE
    assert len(relay.requests) == 1


async def test_from_settings_picks_the_auth_header() -> None:
    async with FakeGemini(auth="authorization") as relay:
        settings = load_settings(
            gemini_api_key=relay.api_key,
            gemini_base_url=relay.base_url,
            gemini_auth_header="Authorization",
        )
        model = GeminiModel.from_settings(settings)
        try:
            assert (await model.generate(request(user("a fox")))).images
        finally:
            await model.aclose()
    assert relay.last.headers["authorization"] == relay.api_key


def test_an_unknown_auth_header_is_a_one_line_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(gemini_auth_header="cookie")
    assert "GEMINI_AUTH_HEADER" in str(info.value)


# --------------------------------------------------------------------- multi-turn replay


async def test_multi_turn_replays_model_parts_verbatim_with_huge_signatures() -> None:
    async with FakeGemini(signature_bytes=400_000) as fake:
        model = GeminiModel(api_key=fake.api_key, model=PRO3, base_url=fake.base_url)
        try:
            turn1 = user("put a hat on him", make_png(seed=1))
            first = await model.generate(request(turn1))
            signatures = [p.thought_signature for p in first.parts if p.thought_signature]
            assert signatures and all(len(s) > 500_000 for s in signatures)
            assert first.parts[0].thought  # Gemini 3 shows its interim picture first
            assert len(first.images) == 1  # ...which is not a result

            turn2 = user("now make the hat red")
            second = await model.generate(request(turn1, Content("model", first.parts), turn2))
            turn3 = user("and add a feather")
            await model.generate(
                request(
                    turn1,
                    Content("model", first.parts),
                    turn2,
                    Content("model", second.parts),
                    turn3,
                )
            )
        finally:
            await model.aclose()

    assert [r.status for r in fake.requests] == [200, 200, 200]
    answered = [a["candidates"][0]["content"]["parts"] for a in fake.answers]
    assert fake.requests[1].contents[1] == {"role": "model", "parts": answered[0]}
    assert fake.requests[2].contents[1]["parts"] == answered[0]
    assert fake.requests[2].contents[3]["parts"] == answered[1]
    # the second edit worked on the first result, not on the original photo
    assert fake.requests[1].images()[-1] == first.images[0].data


async def test_unknown_part_fields_survive_the_round_trip(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    parts: list[dict[str, Any]] = [
        {
            "text": "Here you go.",
            "thoughtSignature": fake.new_signature(),
            "partMetadata": {"k": 1},
        },
        {
            "inlineData": {
                "mimeType": "image/png",
                "data": base64.b64encode(make_png(seed=9)).decode(),
                "displayName": "result.png",
            },
            "thoughtSignature": fake.new_signature(),
            "futureField": [1, {"nested": None}],
        },
    ]
    fake.enqueue_answer(parts)
    model = make_model(model=PRO3)
    turn1 = user("draw a boat")
    first = await model.generate(request(turn1))
    assert first.parts[1].extra["futureField"] == [1, {"nested": None}]

    await model.generate(request(turn1, Content("model", first.parts), user("bigger sail")))

    assert fake.last.status == 200
    assert fake.last.contents[1]["parts"] == parts


async def test_gemini3_rejects_a_dropped_or_truncated_signature(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    model = make_model(model=PRO3)
    turn1 = user("a red balloon", make_png(seed=2))
    first = await model.generate(request(turn1))

    def strip(part: Part) -> Part:
        is_result = part.image is not None and not part.thought
        return replace(part, thought_signature=None) if is_result else part

    def truncate(part: Part) -> Part:
        sig = part.thought_signature
        return replace(part, thought_signature=sig[:-8]) if sig and part.image else part

    dropped = Content("model", tuple(strip(p) for p in first.parts))
    err = await fails(model, request(turn1, dropped, user("make it blue")))
    assert err.kind is FailureKind.BAD_REQUEST
    assert "missing a thought_signature in content position 2, part position 3" in err.detail
    assert "thought_signature" not in err.user_message

    truncated = Content("model", tuple(truncate(p) for p in first.parts))
    err = await fails(model, request(turn1, truncated, user("make it blue")))
    assert "Corrupted thought signature" in err.detail

    assert [r.status for r in fake.requests] == [200, 400, 400]  # no retries of a 400
    ok = await model.generate(request(turn1, Content("model", first.parts), user("make it blue")))
    assert ok.images


async def test_flash_tolerates_a_missing_signature_like_the_service(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    model = make_model(model=FLASH)
    turn1 = user("a kite")
    first = await model.generate(request(turn1))
    unsigned = Content("model", tuple(replace(p, thought_signature=None) for p in first.parts))
    assert (await model.generate(request(turn1, unsigned, user("green")))).images


# ------------------------------------------------------------------------- soft failures


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("SAFETY", "safety filter"),
        ("OTHER", "without giving a reason"),
        ("BLOCKLIST", "words"),
        ("PROHIBITED_CONTENT", "prohibited"),
        ("IMAGE_SAFETY", "picture in your request"),
        ("SOMETHING_NEW", "without giving a reason"),
    ],
)
async def test_prompt_blocks_become_refusals(
    fake: FakeGemini, make_model: ModelFactory, reason: str, words: str
) -> None:
    fake.enqueue_block(reason)
    err = await fails(make_model(), request(user("something", make_png())))
    assert err.kind is FailureKind.REFUSED
    assert words in err.user_message
    assert reason not in err.user_message  # codes are for logs, not for people
    assert reason in err.detail
    assert err.usage is not None and err.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("reason", "kind", "words"),
    [
        ("SAFETY", FailureKind.REFUSED, "safety"),
        ("IMAGE_SAFETY", FailureKind.REFUSED, "safety filter"),
        ("PROHIBITED_CONTENT", FailureKind.REFUSED, "prohibited"),
        ("IMAGE_PROHIBITED_CONTENT", FailureKind.REFUSED, "prohibited"),
        ("BLOCKLIST", FailureKind.REFUSED, "words"),
        ("SPII", FailureKind.REFUSED, "personal information"),
        ("RECITATION", FailureKind.REFUSED, "original"),
        ("IMAGE_RECITATION", FailureKind.REFUSED, "existing image"),
        ("NO_IMAGE", FailureKind.NO_IMAGE, "more explicitly"),
        ("IMAGE_OTHER", FailureKind.NO_IMAGE, "couldn't make a picture"),
        ("MAX_TOKENS", FailureKind.NO_IMAGE, "simpler"),
        ("OTHER", FailureKind.NO_IMAGE, "without making a picture"),
        ("MALFORMED_FUNCTION_CALL", FailureKind.UNAVAILABLE, "garbled"),
        ("A_FUTURE_REASON", FailureKind.NO_IMAGE, "without making a picture"),
    ],
)
async def test_finish_reasons_become_human_messages(
    fake: FakeGemini, make_model: ModelFactory, reason: str, kind: FailureKind, words: str
) -> None:
    fake.enqueue_finish(reason, finish_message="details for the log")
    err = await fails(make_model(), request(user("something")))
    assert err.kind is kind
    assert words in err.user_message
    assert reason not in err.user_message
    assert len(err.user_message) < 160
    assert reason in err.detail and "details for the log" in err.detail
    assert err.usage is not None and err.usage.prompt_tokens > 0
    assert len(fake.requests) == 1


async def test_finish_without_image_keeps_what_the_model_said(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_finish("NO_IMAGE", text="I would rather describe it: a calm lake.")
    err = await fails(make_model(), request(user("paint a lake")))
    assert err.kind is FailureKind.NO_IMAGE
    assert err.text == "I would rather describe it: a calm lake."


async def test_text_only_answer_is_no_image_with_the_models_words(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_text_only("I can't edit photos of real people that way.")
    err = await fails(make_model(), request(user("swap faces", make_png())))
    assert err.kind is FailureKind.NO_IMAGE
    assert err.text == "I can't edit photos of real people that way."
    assert err.user_message == hp.TEXT_ONLY_MESSAGE


async def test_a_thought_image_alone_is_not_a_result(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_answer(
        [
            fake.image_part(make_png(seed=4), thought=True, signature=False),
            fake.text_part("Let me think about the layout.", signature=True),
        ]
    )
    err = await fails(make_model(model=PRO3), request(user("a poster")))
    assert err.kind is FailureKind.NO_IMAGE
    assert err.text == "Let me think about the layout."


async def test_snake_case_answer_is_accepted_and_replayed_as_camelcase(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    png = make_png(seed=6)
    sig = fake.new_signature()
    fake.enqueue(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Done.", "thought_signature": sig},
                            {
                                "inline_data": {
                                    "mime_type": "image/png",
                                    "data": base64.b64encode(png).decode(),
                                },
                                "thought_signature": sig,
                            },
                        ],
                    },
                    "finish_reason": "STOP",
                }
            ],
            "usage_metadata": {
                "prompt_token_count": 11,
                "candidates_token_count": 1290,
                "total_token_count": 1301,
            },
            "model_version": "gemini-3-pro-image-preview",
        }
    )
    model = make_model(model=PRO3)
    turn1 = user("a lighthouse")
    result = await model.generate(request(turn1))
    assert result.images[0].data == png
    assert result.text == "Done."
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (11, 1301)
    assert result.model_version == PRO3

    await model.generate(request(turn1, Content("model", result.parts), user("at night")))
    assert fake.last.status == 200
    assert fake.last.contents[1]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()},
        "thoughtSignature": sig,
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><body>502 from some proxy</body></html>",
        b"[1, 2, 3]",
        b'{"candidates": "nope"}',
        b'{"candidates": [{"content": {"parts": "x"}}]}',
        b'{"candidates": [{"content": {"parts": [{"inlineData": '
        b'{"mimeType": "image/png", "data": "!!not base64!!"}}]}}]}',
        b'{"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png"}}]}}]}',
        b'{"candidates": [{"content": {"parts": [{"inlineData": {"data": "aGk="}}]}}]}',
        b"{}",
    ],
)
async def test_malformed_answers_are_clean_errors(
    fake: FakeGemini, make_model: ModelFactory, raw: bytes
) -> None:
    fake.enqueue(raw=raw, headers={"content-type": "application/json"})
    err = await fails(make_model(), request(user("a tree")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message in (hp.MALFORMED_MESSAGE, hp.EMPTY_MESSAGE)
    assert len(fake.requests) == 1


# ---------------------------------------------------------------- answers that cannot be read


def _answer_with_usage(**usage: Any) -> bytes:
    """A good answer (text and an image) whose usageMetadata says ``usage``."""
    png = base64.b64encode(make_png(seed=4)).decode()
    meta = ", ".join(f'"{name}": {value}' for name, value in usage.items())
    return (
        '{"candidates": [{"content": {"role": "model", "parts": [{"text": "here"}, '
        f'{{"inlineData": {{"mimeType": "image/png", "data": "{png}"}}}}]}}, '
        f'"finishReason": "STOP"}}], "usageMetadata": {{{meta}}}}}'
    ).encode()


@pytest.mark.parametrize(
    "usage",
    [
        {"promptTokenCount": "1e400"},
        {"candidatesTokenCount": "1" + "0" * 30},
        {"totalTokenCount": "9" * 5000},
        {"candidatesTokenCount": -5},
        {"thoughtsTokenCount": "NaN"},
        {"promptTokenCount": "Infinity"},
        {"promptTokenCount": "1.5"},
        {"promptTokenCount": '"lots"'},
        {"promptTokenCount": "true"},
        {"candidatesTokensDetails": '[{"modality": "IMAGE", "tokenCount": -1290}]'},
        {"candidatesTokensDetails": '{"IMAGE": 1290}'},
    ],
)
async def test_absurd_token_counts_are_an_unreadable_answer(
    fake: FakeGemini, make_model: ModelFactory, usage: dict[str, str]
) -> None:
    fake.enqueue(raw=_answer_with_usage(**usage), headers={"content-type": "application/json"})
    err = await fails(make_model(), request(user("a tree")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.MALFORMED_MESSAGE
    assert len(fake.requests) == 1


async def test_sane_token_counts_in_the_same_shape_are_read(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    """The control for the test above: only the numbers made those answers unreadable."""
    fake.enqueue(
        raw=_answer_with_usage(promptTokenCount=7, candidatesTokenCount="1300"),
        headers={"content-type": "application/json"},
    )
    result = await make_model().generate(request(user("a tree")))
    assert (result.usage.prompt_tokens, result.usage.output_tokens) == (7, 1300)


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not really gzip", {"content-encoding": "gzip"}),
        (b"\x78\x9cnot really deflate", {"content-encoding": "deflate"}),
        (b"\xce\xb2\xcf\x81 not brotli", {"content-encoding": "br"}),
        (b"\x28\xb5\x2f\xfd not zstd", {"content-encoding": "zstd"}),
        (b'{"candidates": [], "note": "caf\xe9 \xff\xfe"}', {}),
        (b'{"candidates": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
        (b'{"usageMetadata": {"promptTokenCount": NaN}, "candidates": []}', {}),
    ],
    ids=["gzip", "deflate", "brotli", "zstd", "not-utf8", "nested", "nan"],
)
async def test_undecodable_bodies_are_an_unreadable_answer(
    fake: FakeGemini, make_model: ModelFactory, raw: bytes, headers: dict[str, str]
) -> None:
    fake.enqueue(raw=raw, headers={"content-type": "application/json", **headers})
    err = await fails(make_model(), request(user("a tree")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.MALFORMED_MESSAGE
    assert len(fake.requests) == 1


async def test_the_recorded_live_answer_parses(fake: FakeGemini, make_model: ModelFactory) -> None:
    """The shape of a logged live response (image data swapped for a real PNG)."""
    recorded = json.loads((FIXTURES / "gemini_2.5_flash_image_text_plus_image.json").read_text())
    png = make_png(seed=8)
    recorded["candidates"][0]["content"]["parts"][1]["inlineData"]["data"] = base64.b64encode(
        png
    ).decode()
    fake.enqueue(recorded)
    result = await make_model().generate(request(user("a cat")))
    assert result.text == "Sure, here is a cat:"
    assert result.images == [Blob("image/png", png)]
    assert (result.usage.prompt_tokens, result.usage.output_tokens) == (4, 1298)
    assert result.usage.total_tokens == 1302
    # candidatesTokensDetails names IMAGE only: the rest of the output is text
    assert (result.usage.image_output_tokens, result.usage.text_output_tokens) == (1290, 8)
    assert result.usage.thought_tokens == 0
    # and the fake's own default answer has the same envelope
    await make_model().generate(request(user("a cat")))
    assert set(recorded) <= set(fake.answers[-1])


async def test_thinking_counts_as_output_and_is_reported_apart(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    result = await make_model(model=PRO3).generate(request(user("a cat")))
    meta = fake.answers[0]["usageMetadata"]
    usage = result.usage
    assert usage.thought_tokens == meta["thoughtsTokenCount"] == 120
    assert usage.output_tokens == meta["candidatesTokenCount"] + 120
    assert usage.image_output_tokens == 1290
    assert usage.text_output_tokens == meta["candidatesTokenCount"] - 1290
    assert usage.total_tokens == meta["totalTokenCount"]


async def test_a_text_entry_in_the_details_is_taken_as_given(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    recorded = json.loads((FIXTURES / "gemini_2.5_flash_image_text_plus_image.json").read_text())
    recorded["candidates"][0]["content"]["parts"][1]["inlineData"]["data"] = base64.b64encode(
        make_png()
    ).decode()
    recorded["usageMetadata"]["candidatesTokensDetails"] = [
        {"modality": "TEXT", "tokenCount": 6},
        {"modality": "IMAGE", "tokenCount": 1290},
    ]
    fake.enqueue(recorded)
    usage = (await make_model().generate(request(user("a cat")))).usage
    assert (usage.text_output_tokens, usage.image_output_tokens) == (6, 1290)


# ------------------------------------------------------------------------------ retries


async def test_429_waits_the_requested_retry_delay_then_succeeds(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(429, retry_delay="1.5s")
    result = await make_model(sleep=sleeps).generate(request(user("a fox")))
    assert result.images
    assert sleeps.calls == [1.5]
    assert [r.status for r in fake.requests] == [429, 200]


async def test_429_honours_retry_after_header(fake: FakeGemini, make_model: ModelFactory) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(429, retry_after="3")
    assert (await make_model(sleep=sleeps).generate(request(user("a fox")))).images
    assert sleeps.calls == [3.0]


async def test_429_beyond_the_budget_gives_up_at_once_saying_when(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(429, retry_delay="500s")
    err = await fails(make_model(sleep=sleeps, budget=180), request(user("a fox")))
    assert err.kind is FailureKind.RATE_LIMITED
    assert "about 9 minutes" in err.user_message
    assert sleeps.calls == []
    assert len(fake.requests) == 1


async def test_exhausted_daily_quota_is_not_retried(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_error(429, retry_delay="20s", daily_quota=True)
    err = await fails(make_model(), request(user("a fox")))
    assert err.kind is FailureKind.RATE_LIMITED
    assert "daily quota" in err.user_message
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_with_growing_backoff(
    fake: FakeGemini, make_model: ModelFactory, status: int
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(status, times=2)
    result = await make_model(sleep=sleeps, backoff_base=0.5).generate(request(user("a fox")))
    assert result.images
    assert [r.status for r in fake.requests] == [status, status, 200]
    assert sleeps.calls == [0.5, 1.0]


async def test_retries_stop_at_max_attempts(fake: FakeGemini, make_model: ModelFactory) -> None:
    fake.enqueue_error(503, times=10)
    err = await fails(make_model(max_attempts=3), request(user("a fox")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.UNAVAILABLE_MESSAGE
    assert "overloaded" in err.detail
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [400, 403, 409, 413])
async def test_other_client_errors_are_not_retried(
    fake: FakeGemini, make_model: ModelFactory, status: int
) -> None:
    fake.enqueue_error(status, "Unable to process input image.")
    err = await fails(make_model(), request(user("a fox")))
    assert len(fake.requests) == 1
    assert "Unable to process input image." in err.detail
    assert "Unable to process" not in err.user_message
    expected = FailureKind.AUTH if status == 403 else FailureKind.BAD_REQUEST
    assert err.kind is expected


async def test_401_is_auth_and_never_shows_the_key(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_error(401)
    err = await fails(make_model(), request(user("a fox")))
    assert err.kind is FailureKind.AUTH
    assert "key" in err.user_message
    assert fake.api_key not in f"{err.user_message} {err.detail} {err}"


async def test_a_wrong_key_is_auth_like_the_real_api_key_invalid(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    err = await fails(make_model(api_key="AIza-wrong-key"), request(user("a fox")))
    assert fake.last.status == 400  # the service answers 400 API_KEY_INVALID
    assert err.kind is FailureKind.AUTH
    assert "AIza-wrong-key" not in f"{err.user_message} {err.detail}"
    assert len(fake.requests) == 1


async def test_a_key_echoed_by_the_service_is_redacted(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue_error(400, f"API key {fake.api_key} is not enabled for this API.")
    err = await fails(make_model(), request(user("a fox")))
    assert fake.api_key not in f"{err.user_message} {err.detail} {err}"
    assert "[redacted]" in err.detail


async def test_unsupported_region_says_so(fake: FakeGemini, make_model: ModelFactory) -> None:
    fake.enqueue_error(
        400, "User location is not supported for the API use.", status_name="FAILED_PRECONDITION"
    )
    err = await fails(make_model(), request(user("a fox")))
    assert err.kind is FailureKind.BAD_REQUEST
    assert err.user_message == hp.REGION_MESSAGE
    assert len(fake.requests) == 1


async def test_unknown_model_is_named_in_the_message(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    err = await fails(make_model(model="gemini-nonexistent"), request(user("a fox")))
    assert err.kind is FailureKind.BAD_REQUEST
    assert "gemini-nonexistent" in err.user_message
    assert len(fake.requests) == 1


async def test_oversized_request_is_refused_with_a_helpful_message(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    big = make_png() + bytes(21 * 1024 * 1024 * 3 // 4)
    err = await fails(make_model(), request(user("huge", big)))
    assert err.kind is FailureKind.BAD_REQUEST
    assert err.user_message == hp.TOO_LARGE_MESSAGE
    assert "20971520" in err.detail


async def test_timeouts_end_as_unavailable_within_the_budget(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue(delay=30, times=20)  # the default answer, far too late
    model = make_model(timeout=0.2, budget=0.7, max_attempts=20, sleep=asyncio.sleep)
    err = await fails(model, request(user("a fox")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.TIMEOUT_MESSAGE
    # the budget, not max_attempts, ended it
    assert 2 <= len(fake.requests) < 20


async def test_no_attempt_starts_that_could_not_finish_in_the_budget(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.enqueue(delay=30, times=5)
    model = make_model(timeout=0.3, budget=0.5, max_attempts=5, sleep=asyncio.sleep)
    err = await fails(model, request(user("a fox")))
    assert err.user_message == hp.TIMEOUT_MESSAGE
    # after one 0.3 s attempt only 0.2 s are left: too little for a second one
    assert len(fake.requests) == 1


async def test_a_wait_that_leaves_no_time_for_an_attempt_gives_up_at_once(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(429, retry_delay="179.5s")
    err = await fails(make_model(sleep=sleeps, budget=180), request(user("a fox")))
    assert err.kind is FailureKind.RATE_LIMITED
    assert "about 3 minutes" in err.user_message
    assert sleeps.calls == []
    assert len(fake.requests) == 1


async def test_an_absurd_retry_delay_is_ignored_not_a_crash(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue_error(503, retry_delay="9" * 400 + "s", retry_after="9" * 400)
    result = await make_model(sleep=sleeps).generate(request(user("a fox")))
    assert result.images
    assert sleeps.calls == [0.01]  # the ordinary backoff


async def test_unreachable_service_is_retried_then_unavailable(make_model: ModelFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = SleepRecorder()
    model = make_model(base_url=f"http://127.0.0.1:{port}", max_attempts=3, sleep=sleeps)
    err = await fails(model, request(user("a fox")))
    assert err.kind is FailureKind.UNAVAILABLE
    assert err.user_message == hp.UNREACHABLE_MESSAGE
    assert sleeps.calls == [0.01, 0.02]


# ------------------------------------------------------------------------ secrets & logs


async def test_key_and_image_bytes_never_reach_the_logs(
    fake: FakeGemini, make_model: ModelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    photo = make_png(seed=12)
    fake.enqueue_error(429, retry_delay="0.1s")
    model = make_model()
    result = await model.generate(request(user("a fox", photo)))
    fake.enqueue_error(401)
    await fails(model, request(user("a fox")))

    ours = [r.getMessage() for r in caplog.records if r.name == "bot.models.http_policy"]
    assert any("attempt 1: 429" in line for line in ours)
    assert any("attempt 2: 200" in line for line in ours)
    assert any("attempt 1: 401" in line for line in ours)
    everything = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert fake.api_key not in everything
    assert base64.b64encode(photo).decode()[:40] not in everything
    assert base64.b64encode(result.images[0].data).decode()[:40] not in everything
    assert fake.api_key not in repr(model)


async def test_a_bearer_key_reaches_no_log_line_url_or_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeGemini(auth="bearer", api_key="sk-relay-SECRET-0042") as relay:
        relay.enqueue_error(503)
        relay.enqueue_error(400, f"API key {relay.api_key} is not enabled for this API.")
        model = GeminiModel(
            api_key=relay.api_key,
            model=FLASH,
            base_url=relay.base_url,
            auth_header="bearer",
            policy=CallPolicy(jitter=0),
            sleep=SleepRecorder(),
        )
        try:
            err = await fails(model, request(user("a fox")))
        finally:
            await model.aclose()
    assert [r.status for r in relay.requests] == [503, 400]
    assert all(r.query == {} and relay.api_key not in r.path for r in relay.requests)
    assert "[redacted]" in err.detail
    assert relay.api_key not in f"{err.user_message} {err.detail} {err!r}"
    everything = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "attempt 2: 400" in caplog.text
    assert relay.api_key not in everything


# --------------------------------------------------------------------------- settings


def test_missing_key_is_a_one_line_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        GeminiModel.from_settings(load_settings())
    assert "GEMINI_API_KEY" in str(info.value)
    assert "\n" not in str(info.value)


async def test_from_settings_uses_the_gemini_settings(fake: FakeGemini) -> None:
    settings = load_settings(
        gemini_api_key=fake.api_key,
        gemini_base_url=fake.base_url + "/",
        gemini_model=PRO3,
        gemini_aspect_ratio="4:3",
        gemini_image_size="1k",
        gemini_max_attempts=2,
    )
    model = GeminiModel.from_settings(settings)
    try:
        assert (model.name, model.max_input_images, model.policy.max_attempts) == (PRO3, 14, 2)
        assert (await model.generate(request(user("a fox")))).images
        assert fake.last.generation_config["imageConfig"] == {
            "aspectRatio": "4:3",
            "imageSize": "1K",
        }
    finally:
        await model.aclose()

    capped = GeminiModel.from_settings(
        load_settings(gemini_api_key="k", gemini_model=FLASH, chatbrush_max_input_images=2)
    )
    assert capped.max_input_images == 2
    flash = GeminiModel.from_settings(load_settings(gemini_api_key="k", gemini_model=FLASH))
    assert flash.max_input_images == 3
    await capped.aclose()
    await flash.aclose()


# ------------------------------------------------------------------------ client life


async def test_concurrent_calls_share_one_client(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    model = make_model()
    results = await asyncio.gather(*(model.generate(request(user(f"fox {i}"))) for i in range(4)))
    assert all(isinstance(r, GenerateResult) and r.images for r in results)
    assert sorted(r.prompt for r in fake.requests) == [f"fox {i}" for i in range(4)]


async def test_a_borrowed_client_is_left_open(fake: FakeGemini) -> None:
    async with httpx.AsyncClient() as client:
        model = GeminiModel(
            api_key=fake.api_key, model=FLASH, base_url=fake.base_url, client=client
        )
        assert (await model.generate(request(user("a fox")))).images
        await model.aclose()
        assert not client.is_closed


# --------------------------------------------------------------------------- part JSON


def test_part_json_accepts_snake_case_and_emits_camel_case() -> None:
    png = make_png(seed=1)
    part = part_from_json(
        {
            "inline_data": {"mime_type": "image/png", "data": base64.b64encode(png).decode()},
            "thought_signature": "c2lnbmF0dXJl",
            "thought": True,
        }
    )
    assert part.image == Blob("image/png", png)
    assert (part.thought, part.thought_signature) == (True, "c2lnbmF0dXJl")
    assert part_to_json(part) == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()},
        "thought": True,
        "thoughtSignature": "c2lnbmF0dXJl",
    }


def test_part_json_round_trips_unknown_fields() -> None:
    wire = {
        "text": "hello",
        "thoughtSignature": "QUJD",
        "videoMetadata": {"fps": 2},
        "somethingNew": [1, 2],
    }
    assert part_to_json(part_from_json(wire)) == wire


def test_another_providers_fields_are_not_sent_to_gemini() -> None:
    part = Part(text="Here you go.", extra={"openai:reasoning_details": [{"type": "x"}]})
    assert part_to_json(part) == {"text": "Here you go."}


@pytest.mark.parametrize("data", ["not base64!", "QUJD$", 12])
def test_part_json_refuses_bad_base64(data: object) -> None:
    with pytest.raises(hp.MalformedAnswer):
        part_from_json({"inlineData": {"mimeType": "image/png", "data": data}})


# ------------------------------------------------------------------------ the fake itself


async def test_fake_demands_the_key_header_like_the_service(fake: FakeGemini) -> None:
    url = f"{fake.base_url}/v1beta/models/{FLASH}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient() as client:
        missing = await client.post(url, json=body)
        unknown_field = await client.post(
            url,
            json={**body, "generation_config": {"responseModality": ["IMAGE"]}},
            headers={"x-goog-api-key": fake.api_key},
        )
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert unknown_field.status_code == 400
    assert 'Unknown name "responseModality"' in unknown_field.json()["error"]["message"]


async def test_fake_pause_holds_answers_until_resumed(
    fake: FakeGemini, make_model: ModelFactory
) -> None:
    fake.pause()
    call = asyncio.create_task(make_model().generate(request(user("slow fox"))))
    await fake.wait_for_requests(1)
    await asyncio.sleep(0.05)
    assert not call.done()
    fake.resume()
    assert (await call).images


def test_fake_runs_in_a_thread_for_sync_and_subprocess_tests() -> None:
    with FakeGemini.in_thread() as fake:
        fake.enqueue_error(503)
        sleeps = SleepRecorder()

        async def run() -> GenerateResult:
            model = GeminiModel(
                api_key=fake.api_key,
                model=FLASH,
                base_url=fake.base_url,
                policy=CallPolicy(jitter=0),
                sleep=sleeps,
            )
            try:
                return await model.generate(request(user("a fox")))
            finally:
                await model.aclose()

        result = asyncio.run(run())
        assert fake.wait_for_requests_blocking(2)
    assert result.images
    assert [r.status for r in fake.requests] == [503, 200]
    assert sleeps.calls == [1.0]


async def test_many_conversations_call_the_model_at_once(fake: FakeGemini) -> None:
    """An image model takes seconds: the client must not hold a busy bot to a handful of
    calls at a time (a pool of 20 capped it at 20 ÷ 5 s = 4 edits a second)."""
    settings = load_settings(gemini_api_key=fake.api_key, gemini_base_url=fake.base_url,
                             chatbrush_concurrent_turns=60)
    model = GeminiModel.from_settings(settings)
    fake.pause()
    calls = [asyncio.create_task(model.generate(request(user(f"picture {n}"))))
             for n in range(60)]
    try:
        await fake.wait_for_requests(60)  # all sixty are at the service together
    finally:
        fake.resume()
        await asyncio.gather(*calls)
        await model.aclose()
