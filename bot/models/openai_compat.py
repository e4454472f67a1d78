"""Image models behind an OpenAI-compatible ``/chat/completions`` endpoint.

Many people reach Gemini's image models through relays — OpenRouter, Vercel's AI Gateway,
regional gateways — that speak OpenAI's chat format rather than Gemini's. The history goes
out as ``messages`` whose images are ``image_url`` data URIs (model turns replayed as
their text and images); pictures come back in whichever shape the relay uses:

- ``message.images[]`` of ``{"type": "image_url", "image_url": {"url": "data:…"}}``
  (OpenRouter, Vercel AI Gateway);
- content parts of type ``image_url`` (gateways that convert Gemini's answer);
- a markdown image ``![image](data:image/png;base64,…)`` inside ``content``;
- the same with an ``http(s)`` URL, which the bot downloads.

A download is a request the *service* chose, so it is fenced: a size cap, a timeout, a
check that the bytes are an image, no API key, no redirects that are not checked again,
and no loopback, private or link-local address — every address the name resolves to is
checked and the connection goes to a checked one — unless the operator allowed that host
(:mod:`bot.models.url_guard`).

Retries, budget and the messages users read are :mod:`bot.models.http_policy`'s, as for
Gemini, so both providers fail the same way.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx

from bot.core.config import Settings, SettingsError
from bot.core.failures import FailureKind
from bot.kit.i18n import N_
from bot.kit.images import sniff_image_type
from bot.models import gemini
from bot.models.base import (
    Blob,
    Content,
    GenerateRequest,
    GenerateResult,
    ImageModel,
    ModelError,
    Part,
    Picture,
    Usage,
)
from bot.models.http_policy import (
    AUTH_MESSAGE,
    BAD_REQUEST_MESSAGE,
    CREDITS_MESSAGE,
    EMPTY_MESSAGE,
    REGION_MESSAGE,
    TOO_LARGE_MESSAGE,
    CallPolicy,
    ErrorAnswer,
    HttpImageModel,
    InlineBase64,
    MalformedAnswer,
    Retryable,
    Sleep,
    b64decode_strict,
    classify_status,
    decode_json,
    malformed,
    model_options,
    token_count,
    unknown_model_message,
)
from bot.models.url_guard import FetchFailed, ImageFetcher, Resolver, origin

logger = logging.getLogger(__name__)

#: the extra-field key under which an answer's ``reasoning_details`` is kept for replay
REASONING_KEY: Final = "openai:reasoning_details"

IMAGE_TOO_LARGE_MESSAGE = N_("The picture the model made is larger than this bot accepts.")
DOWNLOAD_MESSAGE = N_("The model made a picture, but the bot couldn't download it. Please try "
                      "again.")
MODERATION_MESSAGE = N_(
    "The model service's moderation flagged this request. "
    "Try rephrasing it or using a different picture."
)
REFUSAL_MESSAGE = N_("The model refused this request. Try rephrasing it or using a different "
                     "picture.")

#: OpenAI ``finish_reason`` -> the Gemini ``finishReason`` with the same meaning
_FINISH_AS_GEMINI: Final = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


# ---------------------------------------------------------------------------------------
# The request


def data_uri(picture: Picture) -> InlineBase64:
    """The picture as a data URI, written into the body by
    :func:`~bot.models.http_policy.json_payload` as it is sent."""
    return InlineBase64(picture, prefix=f"data:{picture.mime_type};base64,")


def message_to_json(content: Content) -> dict[str, Any]:
    """One turn as a chat message: text and ``image_url`` parts, thoughts left out.

    A model turn that carried ``reasoning_details`` sends them back, as relays ask, so
    the model keeps its reasoning across turns."""
    parts: list[dict[str, Any]] = []
    reasoning: Any = None
    for part in content.parts:
        reasoning = reasoning if reasoning is not None else part.extra.get(REASONING_KEY)
        if part.thought:
            continue
        if part.text:
            parts.append({"type": "text", "text": part.text})
        if part.image is not None:
            parts.append({"type": "image_url", "image_url": {"url": data_uri(part.image)}})
    message: dict[str, Any] = {
        "role": "assistant" if content.role == "model" else "user",
        "content": parts or "",
    }
    if content.role == "model" and reasoning is not None:
        message["reasoning_details"] = reasoning
    return message


def request_body(
    request: GenerateRequest,
    *,
    model: str,
    aspect_ratio: str | None = None,
    image_size: str | None = None,
) -> dict[str, Any]:
    """The ``/chat/completions`` body; ``modalities`` and ``image_config`` as OpenRouter
    documents them for image output (relays that do not know them ignore them)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_json(c) for c in request.contents],
        "modalities": ["image", "text"],
        "stream": False,
    }
    image_config: dict[str, str] = {}
    aspect = request.aspect_ratio or aspect_ratio
    size = request.image_size or image_size
    if aspect:
        image_config["aspect_ratio"] = aspect
    if size:
        image_config["image_size"] = size
    if image_config:
        body["image_config"] = image_config
    return body


def completions_url(base_url: str) -> str:
    """``{base}/chat/completions``; the base is the API root, e.g. ``…/api/v1``."""
    base = base_url.strip().rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


# ---------------------------------------------------------------------------------------
# Reading answers


class ImageTooLarge(Exception):
    """A picture in the answer is over the operator's cap."""


@dataclass(frozen=True)
class RemoteImage:
    """A picture the answer links to; downloaded after the answer is read."""

    url: str


Piece = str | Blob | RemoteImage


@dataclass(frozen=True)
class ChatAnswer:
    """A 2xx answer, read: text and pictures in order, with what the model said about it."""

    pieces: tuple[Piece, ...]
    usage: Usage
    finish: str | None = None
    reasoning: Any = None
    model_version: str | None = None
    extra_detail: str = ""

    @property
    def remote(self) -> list[RemoteImage]:
        return [p for p in self.pieces if isinstance(p, RemoteImage)]


_MARKDOWN_IMAGE = re.compile(r"!\[[^\]\n]{0,500}\]\(\s*((?:data:|https?://)[^)\s]+)\s*\)")


def decode_data_uri(uri: str, *, max_bytes: int) -> Blob:
    """A ``data:image/…;base64,…`` URI as a picture, judged by its bytes not its label."""
    header, comma, payload = uri.partition(",")
    params = header.removeprefix("data:").split(";")
    if not comma or "base64" not in (p.strip().lower() for p in params[1:]):
        raise MalformedAnswer("image data URI is not base64")
    payload = "".join(payload.split())  # some relays wrap long base64 lines
    size = len(payload) // 4 * 3
    if size > max_bytes:
        raise ImageTooLarge(f"data URI holds about {size} bytes, over {max_bytes}")
    data = b64decode_strict(payload)
    kind = sniff_image_type(data)
    if kind is None:
        raise MalformedAnswer(f"data URI labelled {params[0]!r} is not an image")
    return Blob(kind, data)


def _image_piece(url: Any, *, max_bytes: int) -> Piece:
    if isinstance(url, Mapping):  # {"image_url": {"url": …}} as well as {"image_url": "…"}
        url = url.get("url")
    if not isinstance(url, str) or not url.strip():
        raise MalformedAnswer("image_url has no url")
    url = url.strip()
    if url.startswith("data:"):
        return decode_data_uri(url, max_bytes=max_bytes)
    if url.startswith(("http://", "https://")):
        return RemoteImage(url)
    raise MalformedAnswer(f"image url has an unsupported scheme: {url[:40]!r}")


def _text_pieces(text: str, *, max_bytes: int) -> list[Piece]:
    """Text with its markdown images taken out as pictures, in order."""
    pieces: list[Piece] = []
    position = 0
    for match in _MARKDOWN_IMAGE.finditer(text):
        pieces.append(text[position : match.start()])
        pieces.append(_image_piece(match.group(1), max_bytes=max_bytes))
        position = match.end()
    pieces.append(text[position:])
    return [p for p in pieces if not isinstance(p, str) or p.strip()]


def _content_pieces(content: Any, *, max_bytes: int) -> list[Piece]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_pieces(content, max_bytes=max_bytes)
    if not isinstance(content, list):
        raise MalformedAnswer("message content is neither text nor a list of parts")
    pieces: list[Piece] = []
    for item in content:
        if not isinstance(item, Mapping):
            raise MalformedAnswer("a content part is not an object")
        kind = item.get("type")
        if kind == "text" and isinstance(item.get("text"), str):
            pieces.extend(_text_pieces(item["text"], max_bytes=max_bytes))
        elif kind == "image_url":
            pieces.append(_image_piece(item.get("image_url"), max_bytes=max_bytes))
    return pieces


def parse_usage(body: Mapping[str, Any]) -> Usage:
    """OpenAI's ``usage``: completion tokens include reasoning and images; relays break
    them down in ``completion_tokens_details`` (``image_tokens``, ``reasoning_tokens``,
    sometimes ``text_tokens``; otherwise text is the rest)."""
    usage = body.get("usage")
    if usage is None:
        return Usage()
    if not isinstance(usage, Mapping):
        raise MalformedAnswer("usage is not an object")
    details = usage.get("completion_tokens_details") or {}
    if not isinstance(details, Mapping):
        raise MalformedAnswer("completion_tokens_details is not an object")
    prompt = token_count(usage.get("prompt_tokens"), "prompt_tokens")
    completion = token_count(usage.get("completion_tokens"), "completion_tokens")
    image = token_count(details.get("image_tokens"), "image_tokens")
    reasoning = token_count(details.get("reasoning_tokens"), "reasoning_tokens")
    if details.get("text_tokens") is not None:
        text = token_count(details.get("text_tokens"), "text_tokens")
    else:
        text = max(0, completion - image - reasoning)
    return Usage(
        prompt_tokens=prompt,
        output_tokens=completion,
        total_tokens=token_count(usage.get("total_tokens"), "total_tokens") or prompt + completion,
        image_output_tokens=image,
        text_output_tokens=text,
        thought_tokens=reasoning,
    )


def _error_in_answer(error: Mapping[str, Any], usage: Usage) -> ModelError | Retryable:
    """An error inside a 200 answer (OpenRouter reports failures during generation so):
    its numeric ``code`` is an HTTP status."""
    code = error.get("code")
    message = str(error.get("message") or "")[:500]
    detail = f"error in answer: {code} {message}".strip()
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return classify_status(
            code, detail=detail, retry_after=None, unknown_model=BAD_REQUEST_MESSAGE
        )
    return ModelError(FailureKind.UNAVAILABLE, EMPTY_MESSAGE, detail=detail, usage=usage)


def parse_answer(raw: bytes, *, max_image_bytes: int) -> ChatAnswer:
    """Read a 2xx body, or raise the :class:`ModelError` (or :class:`Retryable`) it means."""
    try:
        body = decode_json(raw)
        if not isinstance(body, dict):
            raise MalformedAnswer(f"answer is a JSON {type(body).__name__}, not an object")
        usage = parse_usage(body)
    except MalformedAnswer as exc:
        raise malformed(str(exc)) from None
    choices = body.get("choices")
    error = body.get("error")
    if not choices and isinstance(error, Mapping):
        raise _error_in_answer(error, usage)
    if not choices:
        raise ModelError(FailureKind.UNAVAILABLE, EMPTY_MESSAGE, detail="no choices", usage=usage)
    if not isinstance(choices, list) or not isinstance(choices[0], Mapping):
        raise malformed("choices is not a list of objects", usage=usage)
    choice = choices[0]
    if isinstance(choice.get("error"), Mapping):
        raise _error_in_answer(choice["error"], usage)
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise malformed("choice has no message object", usage=usage)
    try:
        pieces = _content_pieces(message.get("content"), max_bytes=max_image_bytes)
        images = message.get("images") or []
        if not isinstance(images, list):
            raise MalformedAnswer("message.images is not a list")
        for item in images:
            if isinstance(item, Mapping):
                item = item.get("image_url", item.get("imageUrl"))
            pieces.append(_image_piece(item, max_bytes=max_image_bytes))
    except MalformedAnswer as exc:
        raise malformed(f"bad message: {exc}", usage=usage) from None
    except ImageTooLarge as exc:
        raise ModelError(
            FailureKind.UNAVAILABLE, IMAGE_TOO_LARGE_MESSAGE, detail=str(exc), usage=usage
        ) from None
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        raise ModelError(
            FailureKind.REFUSED, REFUSAL_MESSAGE, detail="refusal", text=refusal, usage=usage
        )
    native = choice.get("native_finish_reason")
    finish = str(native) if native in gemini.FINISH_MESSAGES else None
    reason = choice.get("finish_reason")
    if finish is None and isinstance(reason, str):
        finish = _FINISH_AS_GEMINI.get(reason, reason.upper())
    model_version = body.get("model")
    return ChatAnswer(
        pieces=tuple(_unique(pieces)),
        usage=usage,
        finish=finish,
        reasoning=message.get("reasoning_details"),
        model_version=model_version if isinstance(model_version, str) else None,
        extra_detail=f"finish_reason={reason} native={native}",
    )


def _unique(pieces: Iterable[Piece]) -> list[Piece]:
    """Pieces with a repeated picture dropped: some relays send it in two places."""
    seen: set[bytes | str] = set()
    out: list[Piece] = []
    for piece in pieces:
        if not isinstance(piece, str):
            key = piece.data if isinstance(piece, Blob) else piece.url
            if key in seen:
                continue
            seen.add(key)
        out.append(piece)
    return out


@dataclass
class OpenAIError:
    """The parts of an OpenAI-style error body we act on (OpenRouter's ``code`` is the
    HTTP status; OpenAI's is a string like ``insufficient_quota``)."""

    message: str = ""
    type: str = ""
    code: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, answer: ErrorAnswer) -> OpenAIError:
        body = answer.json
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, Mapping):
            return cls(message=answer.excerpt())
        metadata = error.get("metadata")
        return cls(
            message=str(error.get("message") or ""),
            type=str(error.get("type") or ""),
            code=str(error.get("code") or ""),
            metadata=metadata if isinstance(metadata, Mapping) else {},
        )


def classify_error(answer: ErrorAnswer, model: str, setting: str) -> ModelError | Retryable:
    """What a non-2xx answer from an OpenAI-compatible service means for the user."""
    err = OpenAIError.of(answer)
    status = answer.status
    detail = f"HTTP {status} {err.type}/{err.code}: {err.message}"[:1000]
    lowered = err.message.lower()
    if "insufficient_quota" in (err.code, err.type):
        return ModelError(FailureKind.AUTH, CREDITS_MESSAGE, detail=detail)
    if err.code in ("invalid_api_key", "invalid_authentication"):
        return ModelError(FailureKind.AUTH, AUTH_MESSAGE, detail=detail)
    if status == 403 and ("reasons" in err.metadata or "flagged_input" in err.metadata):
        return ModelError(FailureKind.REFUSED, MODERATION_MESSAGE, detail=detail)
    if err.code == "unsupported_country_region_territory" or (
        status == 403 and "country" in lowered
    ):
        return ModelError(FailureKind.BAD_REQUEST, REGION_MESSAGE, detail=detail)
    unknown = unknown_model_message(model, setting)
    if err.code == "model_not_found" or (status == 400 and "not a valid model" in lowered):
        return ModelError(FailureKind.BAD_REQUEST, unknown, detail=detail)
    if err.code == "context_length_exceeded":
        return ModelError(FailureKind.BAD_REQUEST, TOO_LARGE_MESSAGE, detail=detail)
    return classify_status(
        status, detail=detail, retry_after=answer.retry_after, unknown_model=unknown
    )


# ---------------------------------------------------------------------------------------
# The model


def api_key(settings: Settings) -> str:
    """``OPENAI_API_KEY``, or the one-line error that says it is missing."""
    key = settings.openai_api_key.get_secret_value().strip() if settings.openai_api_key else ""
    if not key:
        raise SettingsError(
            "OPENAI_API_KEY is not set: put the key of your OpenAI-compatible service "
            f"({settings.openai_base_url}) in the environment or .env"
        )
    return key


class OpenAICompatModel(HttpImageModel):
    """An image model behind an OpenAI-compatible endpoint (``OPENAI_BASE_URL``).

    ``max_image_bytes`` caps every picture in an answer; ``image_fetch_timeout``,
    ``allowed_image_hosts`` and ``resolver`` govern downloads of linked ones."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str,
        policy: CallPolicy | None = None,
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        max_input_images: int | None = None,
        model_setting: str = "OPENAI_MODEL",
        max_image_bytes: int = 30_000_000,
        image_fetch_timeout: float = 30.0,
        allowed_image_hosts: Iterable[str] = (),
        resolver: Resolver | None = None,
        client: httpx.AsyncClient | None = None,
        fetch_client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        key = api_key.strip()
        super().__init__(
            provider="openai",
            model=model.strip(),
            secret=key,
            policy=policy or CallPolicy(),
            aspect_ratio=aspect_ratio,
            image_size=image_size,
            max_input_images=max_input_images,
            model_setting=model_setting,
            client=client,
            sleep=sleep,
        )
        self.max_image_bytes = max_image_bytes
        self._url = completions_url(base_url)
        self._headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        self._fetcher = ImageFetcher(
            max_bytes=max_image_bytes,
            timeout=image_fetch_timeout,
            allowed_hosts=allowed_image_hosts,
            resolver=resolver,
            client=fetch_client,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model: str | None = None, model_setting: str = "OPENAI_MODEL"
    ) -> OpenAICompatModel:
        """The model named ``model`` (default ``OPENAI_MODEL``) at ``OPENAI_BASE_URL``."""
        return cls(
            api_key=api_key(settings),
            model=model or settings.openai_model,
            base_url=settings.openai_base_url,
            model_setting=model_setting,
            max_image_bytes=settings.openai_max_image_bytes,
            image_fetch_timeout=settings.openai_image_fetch_timeout,
            allowed_image_hosts=settings.openai_allow_private_image_hosts,
            **model_options(settings),
        )

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self._fetcher.aclose()

    def build_body(self, request: GenerateRequest) -> dict[str, Any]:
        return request_body(
            request, model=self.name, aspect_ratio=self.aspect_ratio, image_size=self.image_size
        )

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        answer = await self._call(
            request,
            self._url,
            self._headers,
            body=self.build_body,
            read=functools.partial(parse_answer, max_image_bytes=self.max_image_bytes),
            classify=lambda error: classify_error(error, self.name, self.model_setting),
        )
        return await self._result(answer)

    async def _result(self, answer: ChatAnswer) -> GenerateResult:
        """Download linked pictures (unless the answer is a refusal), then judge it."""
        pieces: list[Piece] = list(answer.pieces)
        if answer.remote and answer.finish not in gemini.REFUSING_FINISHES:
            pieces = [await self._download(p, answer.usage) for p in pieces]
        parts = [
            Part(text=p) if isinstance(p, str) else Part(image=p)
            for p in pieces
            if not isinstance(p, RemoteImage)
        ]
        if parts and answer.reasoning is not None:
            parts[0] = Part(
                text=parts[0].text, image=parts[0].image, extra={REASONING_KEY: answer.reasoning}
            )
        result = GenerateResult(
            parts=tuple(parts), usage=answer.usage, model_version=answer.model_version
        )
        return gemini.accept_result(result, answer.finish, answer.extra_detail)

    async def _download(self, piece: Piece, usage: Usage) -> Piece:
        if not isinstance(piece, RemoteImage):
            return piece
        try:
            return await self._fetcher.fetch(piece.url)
        except FetchFailed as exc:
            detail = str(exc)
        except Exception as exc:  # nothing a download does may escape the model call
            detail = f"{origin(piece.url)}: unexpected {type(exc).__name__}"
        logger.warning("%s: linked picture not downloaded: %s", self._http.label, detail)
        raise ModelError(FailureKind.UNAVAILABLE, DOWNLOAD_MESSAGE, detail=detail, usage=usage)


if TYPE_CHECKING:
    _protocol_check: type[ImageModel] = OpenAICompatModel
