"""OpenAICompatModel against the fake OpenAI-compatible service, over real httpx on loopback.

What a user would notice: a relay that speaks OpenAI's chat format edits pictures just like
Gemini does — in every answer shape relays use, across turns — and fails with the same
short messages; a picture the service links to is downloaded only from where it is safe
to go, with a size cap, a timeout and a check that it is a picture; the key never leaves
for anywhere but the service, and never reaches a log.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.core.config import SettingsError, load_settings
from bot.core.failures import FailureKind
from bot.models import http_policy as hp
from bot.models import openai_compat as oc
from bot.models.base import Blob, Content, GenerateRequest, ModelError, Part
from bot.models.http_policy import CallPolicy
from bot.models.openai_compat import OpenAICompatModel
from tests.fakes.gemini import make_png
from tests.fakes.openai_compat import FakeImageHost, FakeOpenAI, data_uri

MODEL = "google/gemini-2.5-flash-image"
FIXTURES = Path(__file__).parent / "fixtures"


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Resolver:
    """Stands in for DNS: the names a test knows, and every question it was asked."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.names.get(host, [])


@pytest.fixture
async def host() -> AsyncIterator[FakeImageHost]:
    async with FakeImageHost() as server:
        yield server


@pytest.fixture
async def fake(host: FakeImageHost) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(image_host=host) as server:
        yield server


ModelFactory = Callable[..., OpenAICompatModel]


@pytest.fixture
async def make_model(fake: FakeOpenAI) -> AsyncIterator[ModelFactory]:
    created: list[OpenAICompatModel] = []

    def factory(**kwargs: Any) -> OpenAICompatModel:
        options: dict[str, Any] = {
            "api_key": fake.api_key,
            "model": MODEL,
            "base_url": fake.base_url,
            "policy": CallPolicy(jitter=0.0, backoff_base=0.01),
            "sleep": SleepRecorder(),
        }
        options.update(kwargs)
        model = OpenAICompatModel(**options)
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


async def fails(model: OpenAICompatModel, req: GenerateRequest) -> ModelError:
    with pytest.raises(ModelError) as info:
        await model.generate(req)
    return info.value


def pixel(png: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(png)) as img:
        value = img.convert("RGB").getpixel((5, 7))
    assert isinstance(value, tuple)
    return value


def fixture_with_png(name: str, png: bytes) -> Any:
    """A recorded answer shape with its truncated image data swapped for a real PNG."""
    text = (FIXTURES / name).read_text()
    for truncated in ("iVBORw0KGgoAAAANSUhEUgAA...", "iVBORw0KGgo...", "..."):
        text = text.replace(f"base64,{truncated}", "base64," + base64.b64encode(png).decode())
    return json.loads(text)


# --------------------------------------------------------------------------- request shape


async def test_first_turn_request_and_answer(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    photo = make_png(40, 30, seed=3)
    model = make_model(aspect_ratio="16:9", image_size="2K")

    result = await model.generate(request(user("make the sky purple", photo)))

    sent = fake.last
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake.api_key}"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "make the sky purple"},
                    {"type": "image_url", "image_url": {"url": data_uri(photo)}},
                ],
            }
        ],
        "modalities": ["image", "text"],
        "stream": False,
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
    }
    (image,) = result.images
    assert pixel(image.data) == tuple(255 - c for c in pixel(photo))
    assert result.text == "Here is the result for: make the sky purple"
    usage = fake.answers[0]["usage"]
    assert result.usage.prompt_tokens == usage["prompt_tokens"] > 0
    assert result.usage.output_tokens == usage["completion_tokens"]
    assert result.usage.image_output_tokens == 1290
    assert result.usage.text_output_tokens == usage["completion_tokens"] - 1290
    assert result.usage.total_tokens == usage["total_tokens"]
    assert result.model_version == MODEL


async def test_no_image_config_unless_asked(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    await make_model().generate(request(user("a cat")))
    assert "image_config" not in fake.last.json
    await make_model(aspect_ratio="16:9").generate(request(user("a cat"), aspect_ratio="1:1"))
    assert fake.last.json["image_config"] == {"aspect_ratio": "1:1"}


@pytest.mark.parametrize("suffix", ["", "/", "/chat/completions"])
async def test_the_base_url_is_the_api_root(
    fake: FakeOpenAI, make_model: ModelFactory, suffix: str
) -> None:
    assert (await make_model(base_url=fake.base_url + suffix).generate(request(user("x")))).images
    assert fake.last.path == "/api/v1/chat/completions"


# --------------------------------------------------------------------- multi-turn history


async def test_the_second_turn_replays_the_history_as_messages(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    model = make_model()
    photo = make_png(seed=1)
    turn1 = user("put a hat on him", photo)
    first = await model.generate(request(turn1))
    turn2 = user("now make the hat red")

    second = await model.generate(request(turn1, Content("model", first.parts), turn2))

    first_image = first.images[0].data
    assert fake.last.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "put a hat on him"},
                {"type": "image_url", "image_url": {"url": data_uri(photo)}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Here is the result for: put a hat on him"},
                {"type": "image_url", "image_url": {"url": data_uri(first_image)}},
            ],
        },
        {"role": "user", "content": [{"type": "text", "text": "now make the hat red"}]},
    ]
    # the second edit worked on the first result, not on the original photo
    assert pixel(second.images[0].data) == pixel(photo)


async def test_reasoning_details_go_back_verbatim_and_thoughts_stay_out(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    reasoning = [{"type": "reasoning.encrypted", "data": "c2lnbmF0dXJl", "format": "google"}]
    fake.enqueue(reasoning=reasoning)
    model = make_model(model="google/gemini-3-pro-image-preview")
    turn1 = user("a red balloon")
    first = await model.generate(request(turn1))
    # a turn made on Gemini's own API may carry thought parts: they are not replayed
    history = Content(
        "model", (Part(image=Blob("image/png", make_png()), thought=True), *first.parts)
    )

    await model.generate(request(turn1, history, user("make it blue")))

    assistant = fake.last.messages[1]
    assert assistant["reasoning_details"] == reasoning
    assert [p["type"] for p in assistant["content"]] == ["text", "image_url"]


# --------------------------------------------------------------------------- answer shapes


@pytest.mark.parametrize("shape", ["images", "markdown", "content_parts"])
async def test_every_inline_answer_shape_gives_the_picture(
    fake: FakeOpenAI, make_model: ModelFactory, shape: str
) -> None:
    photo = make_png(seed=5)
    fake.enqueue(shape=shape)
    result = await make_model().generate(request(user("invert it", photo)))
    (image,) = result.images
    assert image.mime_type == "image/png"
    assert pixel(image.data) == tuple(255 - c for c in pixel(photo))
    assert result.text == "Here is the result for: invert it"
    assert "![" not in result.text


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("openai_openrouter_images.json", "I've generated a beautiful sunset image for you."),
        ("openai_openrouter_images_usage.json", "Here is a beautiful sunset for you!"),
        ("openai_vercel_gateway_images.json", "I've generated a beautiful sunset image for you."),
        ("openai_relay_markdown_data_uri.json", ""),
        ("openai_gateway_content_parts.json", "..."),
    ],
)
async def test_recorded_answer_shapes_parse(
    fake: FakeOpenAI, make_model: ModelFactory, name: str, text: str
) -> None:
    png = make_png(seed=8)
    fake.enqueue(fixture_with_png(name, png))
    result = await make_model().generate(request(user("a sunset")))
    assert result.images == [Blob("image/png", png)]
    assert result.text == text


async def test_recorded_usage_details_are_read(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    png = make_png(seed=8)
    answer = fixture_with_png("openai_openrouter_images_usage.json", png)
    fake.enqueue(answer)
    usage = (await make_model().generate(request(user("a sunset")))).usage
    assert (usage.prompt_tokens, usage.output_tokens, usage.total_tokens) == (6, 1299, 1305)
    assert (usage.image_output_tokens, usage.text_output_tokens) == (1290, 9)

    answer.update(json.loads((FIXTURES / "openai_gateway_usage_details.json").read_text()))
    fake.enqueue(answer)
    usage = (await make_model().generate(request(user("a sunset")))).usage
    assert (usage.image_output_tokens, usage.text_output_tokens, usage.thought_tokens) == (
        1290,
        10,
        0,
    )


async def test_a_picture_sent_twice_is_kept_once(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    png = make_png(seed=2)
    answer = fixture_with_png("openai_openrouter_images.json", png)
    answer["choices"][0]["message"]["content"] = f"Done.\n![image]({data_uri(png)})"
    fake.enqueue(answer)
    result = await make_model().generate(request(user("a sunset")))
    assert result.images == [Blob("image/png", png)]
    assert result.text == "Done."


# --------------------------------------------------------------------------- linked pictures


@pytest.mark.parametrize("shape", ["markdown_url", "content_parts_url"])
async def test_a_linked_picture_on_an_allowed_host_is_downloaded_without_the_key(
    fake: FakeOpenAI, host: FakeImageHost, make_model: ModelFactory, shape: str
) -> None:
    dns = Resolver({"images.relay.test": ["127.0.0.1"]})
    model = make_model(allowed_image_hosts=["images.relay.test"], resolver=dns)
    photo = make_png(seed=6)
    fake.enqueue(shape=shape, link_host="images.relay.test")

    result = await model.generate(request(user("invert it", photo)))

    assert pixel(result.images[0].data) == tuple(255 - c for c in pixel(photo))
    (fetched,) = host.requests
    assert fetched.headers["host"] == f"images.relay.test:{host.port}"
    assert "authorization" not in fetched.headers
    assert fake.api_key not in str(dict(fetched.headers))
    # the name was resolved by our resolver and the checked address used (the test's
    # network guard would have failed a second lookup of this name)
    assert dns.asked == ["images.relay.test"]


async def test_the_recorded_link_shape_is_downloaded(
    fake: FakeOpenAI, host: FakeImageHost, make_model: ModelFactory
) -> None:
    png = make_png(seed=11)
    answer = (FIXTURES / "openai_relay_markdown_url.json").read_text()
    fake.enqueue(json.loads(answer.replace("https://example.com", host.url(""))))
    host.put(png, path="/img/generated.png")
    result = await make_model(allowed_image_hosts=["127.0.0.1"]).generate(request(user("x")))
    assert result.images == [Blob("image/png", png)]
    assert [r.path for r in host.requests] == ["/img/generated.png"]


@pytest.mark.parametrize(
    ("link_host", "names", "reason"),
    [
        ("127.0.0.1", {}, "loopback"),
        ("cdn.example", {"cdn.example": ["93.184.215.14", "10.1.2.3"]}, "private"),
        ("meta.example", {"meta.example": ["169.254.169.254"]}, "link-local"),
        ("v6.example", {"v6.example": ["::ffff:127.0.0.1"]}, "loopback"),
        ("ula.example", {"ula.example": ["fd00::1"]}, "private"),
    ],
)
async def test_a_link_to_a_non_public_address_is_refused_without_a_request(
    fake: FakeOpenAI,
    host: FakeImageHost,
    make_model: ModelFactory,
    link_host: str,
    names: dict[str, list[str]],
    reason: str,
) -> None:
    model = make_model(resolver=Resolver(names))
    fake.enqueue(shape="markdown_url", link_host=link_host)
    err = await fails(model, request(user("a fox")))
    assert err.user_message == oc.DOWNLOAD_MESSAGE
    assert f"({reason})" in err.detail
    assert "OPENAI_ALLOW_PRIVATE_IMAGE_HOSTS" in err.detail
    assert host.requests == []
    assert err.usage is not None and err.usage.image_output_tokens == 1290


async def test_a_redirect_to_a_private_address_is_checked_again(
    fake: FakeOpenAI, host: FakeImageHost, make_model: ModelFactory
) -> None:
    inner = host.url(host.put(make_png()))  # 127.0.0.1: not allowed
    outer = host.put(b"", redirect_to=inner)
    dns = Resolver({"images.relay.test": ["127.0.0.1"]})
    model = make_model(allowed_image_hosts=["images.relay.test"], resolver=dns)
    fake.enqueue(
        {"choices": [{"message": {"content": f"![x]({host.url(outer, 'images.relay.test')})"}}]}
    )
    err = await fails(model, request(user("a fox")))
    assert "refused: 127.0.0.1" in err.detail
    assert [r.path for r in host.requests] == [outer]


BIG = make_png(400, 400, seed=1) + bytes(60_000)


@pytest.mark.parametrize(
    ("data", "content_type", "chunked", "expected"),
    [
        (BIG, "image/png", False, "declares 61"),
        (BIG, "image/png", True, "sent over 50000 bytes"),
        (b"<html>you are not logged in</html>", "text/html", False, "text/html, not a picture"),
        (b"<html>a page, labelled a picture</html>", "image/png", True, "not a picture"),
    ],
)
async def test_a_linked_download_is_capped_and_checked(
    fake: FakeOpenAI,
    host: FakeImageHost,
    make_model: ModelFactory,
    data: bytes,
    content_type: str,
    chunked: bool,
    expected: str,
) -> None:
    path = host.put(data, content_type=content_type, chunked=chunked)
    model = make_model(allowed_image_hosts=["127.0.0.1"], max_image_bytes=50_000)
    fake.enqueue({"choices": [{"message": {"content": f"![x]({host.url(path)})"}}]})
    err = await fails(model, request(user("a fox")))
    assert err.user_message == oc.DOWNLOAD_MESSAGE
    assert expected in err.detail


async def test_a_slow_linked_download_times_out(
    fake: FakeOpenAI, host: FakeImageHost, make_model: ModelFactory
) -> None:
    path = host.put(make_png(), delay=5)
    model = make_model(allowed_image_hosts=["127.0.0.1"], image_fetch_timeout=0.2)
    fake.enqueue({"choices": [{"message": {"content": f"![x]({host.url(path)})"}}]})
    err = await fails(model, request(user("a fox")))
    assert "within 0.2s" in err.detail


async def test_a_data_uri_over_the_cap_is_refused(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    big = make_png(seed=3) + bytes(200_000)
    fake.enqueue({"choices": [{"message": {"images": [{"image_url": {"url": data_uri(big)}}]}}]})
    err = await fails(make_model(max_image_bytes=100_000), request(user("a fox")))
    assert err.user_message == oc.IMAGE_TOO_LARGE_MESSAGE
    assert "over 100000" in err.detail
    assert len(fake.requests) == 1


async def test_a_data_uri_that_is_not_a_picture_is_an_unreadable_answer(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    fake_png = "data:image/png;base64," + base64.b64encode(b"%PDF-1.7 not a picture").decode()
    fake.enqueue({"choices": [{"message": {"content": f"![x]({fake_png})"}}]})
    err = await fails(make_model(), request(user("a fox")))
    assert err.user_message == hp.MALFORMED_MESSAGE


# ------------------------------------------------------------------------------- refusals


async def test_a_text_only_answer_is_no_image_with_the_models_words(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    said = {"message": {"content": "I can't edit that."}, "finish_reason": "stop"}
    fake.enqueue({"choices": [said]})
    err = await fails(make_model(), request(user("swap faces", make_png())))
    assert err.kind is FailureKind.NO_IMAGE
    assert err.user_message == hp.TEXT_ONLY_MESSAGE
    assert err.text == "I can't edit that."


@pytest.mark.parametrize(
    ("choice", "kind", "words"),
    [
        ({"finish_reason": "content_filter"}, FailureKind.REFUSED, "safety"),
        (
            {"finish_reason": "stop", "native_finish_reason": "IMAGE_SAFETY"},
            FailureKind.REFUSED,
            "withheld",
        ),
        ({"finish_reason": "length"}, FailureKind.NO_IMAGE, "ran out of room"),
    ],
)
async def test_finish_reasons_explain_a_missing_picture(
    fake: FakeOpenAI,
    make_model: ModelFactory,
    choice: dict[str, str],
    kind: FailureKind,
    words: str,
) -> None:
    fake.enqueue({"choices": [{"message": {"content": ""}, **choice}]})
    err = await fails(make_model(), request(user("a fox")))
    assert err.kind is kind
    assert words in err.user_message


async def test_a_refusal_field_is_a_refusal_with_its_words(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    fake.enqueue({"choices": [{"message": {"content": None, "refusal": "I can't help."}}]})
    err = await fails(make_model(), request(user("a fox")))
    assert (err.kind, err.text) == (FailureKind.REFUSED, "I can't help.")


async def test_a_linked_picture_is_not_downloaded_for_a_withheld_answer(
    fake: FakeOpenAI, host: FakeImageHost, make_model: ModelFactory
) -> None:
    path = host.put(make_png())
    fake.enqueue(
        {
            "choices": [
                {
                    "message": {"content": f"![x]({host.url(path)})"},
                    "finish_reason": "content_filter",
                }
            ]
        }
    )
    err = await fails(make_model(allowed_image_hosts=["127.0.0.1"]), request(user("a fox")))
    assert err.kind is FailureKind.REFUSED
    assert host.requests == []


# ---------------------------------------------------------------------------------- errors


def recorded_error(name: str, **substitutions: str) -> Any:
    text = json.dumps(json.loads((FIXTURES / "openai_errors.json").read_text())[name])
    for key, value in substitutions.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


@pytest.mark.parametrize(
    ("name", "status", "kind", "message"),
    [
        ("openrouter_401", 401, FailureKind.AUTH, hp.AUTH_MESSAGE),
        ("openai_401", 401, FailureKind.AUTH, hp.AUTH_MESSAGE),
        ("openrouter_402", 402, FailureKind.AUTH, hp.CREDITS_MESSAGE),
        ("openai_429_quota", 429, FailureKind.AUTH, hp.CREDITS_MESSAGE),
        ("openrouter_403_moderation", 403, FailureKind.REFUSED, oc.MODERATION_MESSAGE),
    ],
)
async def test_errors_that_retrying_cannot_fix(
    fake: FakeOpenAI,
    make_model: ModelFactory,
    name: str,
    status: int,
    kind: FailureKind,
    message: str,
) -> None:
    fake.enqueue(recorded_error(name, key=fake.api_key), status=status)
    err = await fails(make_model(), request(user("a fox")))
    assert (err.kind, err.user_message) == (kind, message)
    assert len(fake.requests) == 1
    assert fake.api_key not in f"{err.detail} {err!r}"


async def test_an_unknown_model_is_named_with_its_setting(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    err = await fails(make_model(model="acme/no-such-model"), request(user("a fox")))
    assert fake.last.status == 400
    assert err.kind is FailureKind.BAD_REQUEST
    assert "acme/no-such-model" in err.user_message and "OPENAI_MODEL" in err.user_message


async def test_a_wrong_key_is_auth(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    err = await fails(make_model(api_key="sk-or-v1-wrong"), request(user("a fox")))
    assert (fake.last.status, err.kind) == (401, FailureKind.AUTH)


async def test_429_waits_as_long_as_retry_after_says(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    sleeps = SleepRecorder()
    fake.enqueue(recorded_error("openai_429_rate"), status=429, headers={"retry-after": "7"})
    assert (await make_model(sleep=sleeps).generate(request(user("a fox")))).images
    assert sleeps.calls == [7.0]
    assert [r.status for r in fake.requests] == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried(
    fake: FakeOpenAI, make_model: ModelFactory, status: int
) -> None:
    fake.enqueue_error(status, times=2)
    assert (await make_model().generate(request(user("a fox")))).images
    assert [r.status for r in fake.requests] == [status, status, 200]


async def test_an_error_inside_a_200_answer_is_retried_by_its_code(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    """OpenRouter reports a failure during generation as HTTP 200 with an error body."""
    fake.enqueue({"error": {"code": 502, "message": "Provider returned error"}})
    assert (await make_model().generate(request(user("a fox")))).images
    assert [r.status for r in fake.requests] == [200, 200]


# ---------------------------------------------------------------- answers that cannot be read


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03broken", {"content-encoding": "gzip"}),
        (b'{"choices": [{"message": {"content": "caf\xe9"}}]}', {}),
        (b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
        (b'{"choices": [], "usage": {"prompt_tokens": 1e400}}', {}),
        (b'{"choices": [], "usage": {"completion_tokens": -1290}}', {}),
        (b'{"choices": [], "usage": {"total_tokens": ' + b"9" * 5000 + b"}}", {}),
        (gzip.compress(b'{"choices": "none"}'), {"content-encoding": "gzip"}),
    ],
    ids=["gzip", "not-utf8", "nested", "1e400", "negative", "huge-int", "wrong-type"],
)
async def test_unreadable_answers_give_one_clear_message(
    fake: FakeOpenAI, make_model: ModelFactory, raw: bytes, headers: dict[str, str]
) -> None:
    fake.enqueue(raw=raw, headers={"content-type": "application/json", **headers})
    err = await fails(make_model(), request(user("a fox")))
    assert (err.kind, err.user_message) == (FailureKind.UNAVAILABLE, hp.MALFORMED_MESSAGE)
    assert len(fake.requests) == 1


# ------------------------------------------------------------------------ secrets & settings


async def test_the_key_reaches_no_log_line(
    fake: FakeOpenAI, make_model: ModelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.enqueue(recorded_error("openai_401", key=fake.api_key), status=401)
    await fails(make_model(), request(user("a fox")))
    await make_model().generate(request(user("a fox", make_png())))
    assert "openai google/gemini-2.5-flash-image attempt 1: 401" in caplog.text
    everything = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert fake.api_key not in everything
    assert fake.api_key not in repr(make_model())


def test_a_missing_key_is_a_one_line_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        OpenAICompatModel.from_settings(load_settings(chatbrush_provider="openai"))
    assert "OPENAI_API_KEY" in str(info.value)
    assert "\n" not in str(info.value)


async def test_from_settings_uses_the_openai_and_shared_settings(fake: FakeOpenAI) -> None:
    settings = load_settings(
        openai_api_key=fake.api_key,
        openai_base_url=fake.base_url,
        openai_model="google/gemini-3-pro-image-preview",
        gemini_aspect_ratio="4:3",
        gemini_max_attempts=2,
        openai_max_image_bytes=123_456,
        openai_allow_private_image_hosts="images.local, 10.0.0.7",
    )
    model = OpenAICompatModel.from_settings(settings)
    try:
        assert (model.name, model.max_input_images, model.policy.max_attempts) == (
            "google/gemini-3-pro-image-preview",
            14,
            2,
        )
        assert model.max_image_bytes == 123_456
        assert (await model.generate(request(user("a fox")))).images
        assert fake.last.json["image_config"] == {"aspect_ratio": "4:3"}
    finally:
        await model.aclose()
