"""Gemini's native ``generateContent`` wire format: pure functions, no I/O.

Why hand-written rather than the SDK: we must replay model turns *exactly* (Gemini 3
rejects a history whose image parts lost their ``thoughtSignature``), keep fields we do
not know about, and turn each of the service's many failure shapes into one short message
a chat user can act on. The call itself (retries, budget, reading answers safely) is
:mod:`bot.models.http_policy`, shared with the other providers; :class:`GeminiModel` only
joins the two.

The API key travels only in a header — ``x-goog-api-key`` as Google wants it, or
``Authorization`` for relays that speak the same API (``GEMINI_AUTH_HEADER``) — never in
a URL, a log line, an exception or a user message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from bot.core.config import Settings, SettingsError
from bot.core.failures import FailureKind
from bot.kit.i18n import N_
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
    DAILY_QUOTA_MESSAGE,
    EMPTY_MESSAGE,
    REGION_MESSAGE,
    TEXT_ONLY_MESSAGE,
    TOO_LARGE_MESSAGE,
    CallPolicy,
    ErrorAnswer,
    HttpImageModel,
    InlineBase64,
    MalformedAnswer,
    Sleep,
    Verdict,
    b64decode_strict,
    classify_status,
    decode_json,
    malformed,
    model_options,
    rate_limited_message,
    token_count,
    unknown_model_message,
)
from bot.models.key_pool import DEFAULT_DAILY_REST, DEFAULT_REST, Key, KeyFault, KeyPool

if TYPE_CHECKING:
    import httpx

#: how the key is sent: Google's header, or ``Authorization`` as relays expect it
AUTH_SCHEMES: Final = ("x-goog-api-key", "authorization", "bearer")


def auth_headers(scheme: str, api_key: str) -> dict[str, str]:
    """The header that carries the key: ``x-goog-api-key: K``, ``Authorization: K`` or
    ``Authorization: Bearer K``."""
    if scheme == "x-goog-api-key":
        return {"x-goog-api-key": api_key}
    if scheme == "authorization":
        return {"authorization": api_key}
    if scheme == "bearer":
        return {"authorization": f"Bearer {api_key}"}
    raise ValueError(f"unknown auth scheme {scheme!r}; use one of {', '.join(AUTH_SCHEMES)}")


# ---------------------------------------------------------------------------------------
# Part <-> JSON


_PART_KNOWN = {
    "text",
    "inlineData",
    "inline_data",
    "thought",
    "thoughtSignature",
    "thought_signature",
}
_INLINE_KNOWN = {"data", "mimeType", "mime_type"}


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


def part_to_json(part: Part, *, for_request: bool = False) -> dict[str, Any]:
    """The camelCase wire form of a part; a received part comes back unchanged.

    ``for_request`` leaves a picture as :class:`InlineBase64`, for
    :func:`~bot.models.http_policy.json_payload` to write into the body as it is sent.
    """
    out: dict[str, Any] = {}
    if part.text is not None:
        out["text"] = part.text
    if part.image is not None:
        inline: dict[str, Any] = {
            "mimeType": part.image.mime_type,
            "data": InlineBase64(part.image) if for_request else _base64_text(part.image),
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
        if (key == "inlineData" and part.image is not None) or ":" in key:
            continue  # folded into inlineData above, or another provider's field
        out.setdefault(key, value)
    return out


def _base64_text(picture: Picture) -> str:
    if not isinstance(picture, Blob):
        raise TypeError("a stored picture goes into a request body, read as it is sent")
    return base64.b64encode(picture.data).decode("ascii")


def content_to_json(content: Content, *, for_request: bool = False) -> dict[str, Any]:
    return {"role": content.role,
            "parts": [part_to_json(p, for_request=for_request) for p in content.parts]}


# ---------------------------------------------------------------------------------------
# What users read when Gemini refuses or stops. The messages every provider shares live in
# bot.models.http_policy.

BLOCK_MESSAGES: dict[str, str] = {
    "SAFETY": N_("Your request was blocked by the model's safety filter. "
    "Try rephrasing it or using a different picture."),
    "BLOCKLIST": N_("Your request contains words the model won't accept. Try rephrasing it."),
    "PROHIBITED_CONTENT": N_("Your request was blocked as prohibited content. "
    "Try a different request or picture."),
    "IMAGE_SAFETY": N_("A picture in your request was blocked by the model's safety filter. "
    "Try a different picture."),
    "OTHER": N_("The model refused this request without giving a reason. "
    "Try rephrasing it or using a different picture."),
}
_BLOCK_DEFAULT = BLOCK_MESSAGES["OTHER"]

# finishReason -> (kind, message)
FINISH_MESSAGES: dict[str, tuple[FailureKind, str]] = {
    "SAFETY": (
        FailureKind.REFUSED,
        N_("The model stopped for safety reasons. Try rephrasing your request."),
    ),
    "IMAGE_SAFETY": (
        FailureKind.REFUSED,
        N_("The picture the model made was withheld by its safety filter. "
        "Try rephrasing your request."),
    ),
    "PROHIBITED_CONTENT": (
        FailureKind.REFUSED,
        N_("The model won't make this because it looks like prohibited content."),
    ),
    "IMAGE_PROHIBITED_CONTENT": (
        FailureKind.REFUSED,
        N_("The picture the model made was withheld as prohibited content."),
    ),
    "BLOCKLIST": (
        FailureKind.REFUSED,
        N_("Your request contains words the model won't accept. Try rephrasing it."),
    ),
    "SPII": (
        FailureKind.REFUSED,
        N_("The model stopped because the request seems to involve sensitive personal "
           "information."),
    ),
    "RECITATION": (
        FailureKind.REFUSED,
        N_("The model stopped because the result was too close to existing material. "
        "Try asking for something more original."),
    ),
    "IMAGE_RECITATION": (
        FailureKind.REFUSED,
        N_("The picture was withheld because it was too close to an existing image. "
        "Try asking for something more original."),
    ),
    "LANGUAGE": (
        FailureKind.REFUSED,
        N_("The model doesn't support the language of this request. Try English."),
    ),
    "NO_IMAGE": (
        FailureKind.NO_IMAGE,
        N_("The model didn't make a picture this time. Try describing the change more explicitly."),
    ),
    "IMAGE_OTHER": (
        FailureKind.NO_IMAGE,
        N_("The model couldn't make a picture for this request. Try again or rephrase it."),
    ),
    "MAX_TOKENS": (
        FailureKind.NO_IMAGE,
        N_("The model ran out of room before finishing the picture. Try a simpler request."),
    ),
    "MALFORMED_FUNCTION_CALL": (
        FailureKind.UNAVAILABLE,
        N_("The model's answer came back garbled. Please try again."),
    ),
    "MALFORMED_RESPONSE": (
        FailureKind.UNAVAILABLE,
        N_("The model's answer came back garbled. Please try again."),
    ),
}
_FINISH_DEFAULT = (
    FailureKind.NO_IMAGE,
    N_("The model stopped without making a picture. Try again or rephrase your request."),
)
REFUSING_FINISHES = frozenset(
    reason for reason, (kind, _) in FINISH_MESSAGES.items() if kind is FailureKind.REFUSED
)


def request_body(
    request: GenerateRequest, *, aspect_ratio: str | None = None, image_size: str | None = None
) -> dict[str, Any]:
    """The JSON body of ``generateContent`` (camelCase throughout; pictures as
    :class:`InlineBase64`, for :func:`~bot.models.http_policy.json_payload`); the
    request's own aspect ratio and size win over the model's defaults."""
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    image_config: dict[str, str] = {}
    aspect = request.aspect_ratio or aspect_ratio
    size = request.image_size or image_size
    if aspect:
        image_config["aspectRatio"] = aspect
    if size:
        image_config["imageSize"] = size
    if image_config:
        config["imageConfig"] = image_config
    return {
        "contents": [content_to_json(c, for_request=True) for c in request.contents],
        "generationConfig": config,
    }


# ---------------------------------------------------------------------------------------
# Reading answers


def _get(d: Mapping[str, Any], camel: str) -> Any:
    """A field by its camelCase name, falling back to snake_case (both are accepted)."""
    if camel in d:
        return d[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return d.get(snake)


def _modality_counts(details: Any) -> dict[str, int]:
    """``candidatesTokensDetails`` as {modality: tokens}."""
    if details is None:
        return {}
    if not isinstance(details, list):
        raise MalformedAnswer("candidatesTokensDetails is not a list")
    counts: dict[str, int] = {}
    for item in details:
        if not isinstance(item, Mapping):
            raise MalformedAnswer("candidatesTokensDetails holds a non-object")
        modality = str(item.get("modality") or "MODALITY_UNSPECIFIED").upper()
        tokens = token_count(_get(item, "tokenCount"), "candidatesTokensDetails.tokenCount")
        counts[modality] = counts.get(modality, 0) + tokens
    return counts


def parse_usage(body: Mapping[str, Any]) -> Usage:
    """Token counts. Thinking is billed as output, so it counts as output; image output
    comes from ``candidatesTokensDetails``, and text is the rest when that list names no
    TEXT entry (the live service usually lists IMAGE alone)."""
    meta = _get(body, "usageMetadata")
    if meta is None:
        return Usage()
    if not isinstance(meta, Mapping):
        raise MalformedAnswer("usageMetadata is not an object")

    def count(name: str) -> int:
        return token_count(_get(meta, name), name)

    prompt = count("promptTokenCount")
    candidates = count("candidatesTokenCount")
    thoughts = count("thoughtsTokenCount")
    by_modality = _modality_counts(_get(meta, "candidatesTokensDetails"))
    image = by_modality.get("IMAGE", 0)
    if "TEXT" in by_modality:
        text = by_modality["TEXT"]
    else:
        text = max(0, candidates - sum(by_modality.values()))
    output = candidates + thoughts
    return Usage(
        prompt_tokens=prompt,
        output_tokens=output,
        total_tokens=count("totalTokenCount") or prompt + output,
        image_output_tokens=image,
        text_output_tokens=text,
        thought_tokens=thoughts,
    )


def parse_answer(raw: bytes) -> GenerateResult:
    """Turn a 2xx body into a result, or raise the :class:`ModelError` it means."""
    try:
        body = decode_json(raw)
        if not isinstance(body, dict):
            raise MalformedAnswer(f"answer is a JSON {type(body).__name__}, not an object")
        usage = parse_usage(body)
    except MalformedAnswer as exc:
        raise malformed(str(exc)) from None
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
        raise malformed("candidates is not a list of objects", usage=usage)
    candidate = candidates[0]
    finish = _get(candidate, "finishReason")
    finish = str(finish) if finish else None
    finish_message = _get(candidate, "finishMessage") or ""
    content = candidate.get("content") or {}
    raw_parts = content.get("parts", []) if isinstance(content, Mapping) else None
    if raw_parts is None and isinstance(content, Mapping):
        raw_parts = []
    if not isinstance(raw_parts, list):
        raise malformed("candidate content or content.parts has the wrong type", usage=usage)
    try:
        parts = tuple(part_from_json(p) for p in raw_parts)
    except MalformedAnswer as exc:
        raise malformed(f"bad part: {exc}", usage=usage) from None

    result = GenerateResult(parts=parts, usage=usage, model_version=version)
    return accept_result(result, finish, str(finish_message))


def accept_result(
    result: GenerateResult, finish: str | None, finish_message: str
) -> GenerateResult:
    """The result if it holds a picture the model did not withhold, else the error that
    explains why not (a Gemini ``finishReason``, or text alone, or nothing)."""
    text = result.text or None
    if result.images and finish not in REFUSING_FINISHES:
        return result
    detail = f"finishReason={finish} {finish_message}".strip()
    if finish and finish != "STOP":
        kind, message = FINISH_MESSAGES.get(finish, _FINISH_DEFAULT)
        raise ModelError(kind, message, detail=detail, text=text, usage=result.usage)
    if text:
        raise ModelError(
            FailureKind.NO_IMAGE, TEXT_ONLY_MESSAGE, detail=detail, text=text, usage=result.usage
        )
    raise ModelError(FailureKind.NO_IMAGE, EMPTY_MESSAGE, detail=detail, usage=result.usage)


def parse_duration(value: Any) -> float | None:
    """A protobuf JSON Duration ("34.449s") in seconds; absurd lengths are ignored."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,9})?)s\s*", value)
    return float(match.group(1)) if match else None


#: ErrorInfo reasons that blame the key (or its project), whatever the status
_KEY_REASONS: Final = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "CONSUMER_SUSPENDED",
                                 "SERVICE_DISABLED", "API_KEY_SERVICE_BLOCKED"})


class GoogleError:
    """The parts of a Google error body we act on; tolerant of proxies' HTML pages."""

    def __init__(self, answer: ErrorAnswer) -> None:
        self.status = answer.status
        self.code_name = ""
        self.message = ""
        self.details: list[Mapping[str, Any]] = []
        body = answer.json
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
            self.message = answer.excerpt()
        delays = [parse_duration(i.get("retryDelay")) for i in self._detail("google.rpc.RetryInfo")]
        delays.append(answer.retry_after)
        known = [d for d in delays if d is not None]
        self.retry_after = max(known) if known else None

    def _detail(self, type_suffix: str) -> list[Mapping[str, Any]]:
        return [d for d in self.details if str(d.get("@type", "")).endswith(type_suffix)]

    @property
    def reason(self) -> str:
        infos = self._detail("google.rpc.ErrorInfo")
        return str(infos[0].get("reason", "")) if infos else ""

    @property
    def quota(self) -> bool:
        """The key's quota is spent (not the service overloaded for everyone)."""
        return bool(self._detail("google.rpc.QuotaFailure")) or "quota" in self.message.lower()

    @property
    def file_missing(self) -> bool:
        """A file the request names is gone: 403 like a bad key, told apart by the text
        ("You do not have permission to access the File … or it may not exist.")."""
        text = self.message.lower()
        return "access the file" in text or "may not exist" in text

    @property
    def key_refused(self) -> bool:
        """The service refuses the key itself (invalid, expired, leaked, suspended); a
        403 that names no key (a relay's own refusal, a missing file) is not that."""
        if self.reason in _KEY_REASONS or self.status == 401:
            return True
        text = self.message.lower()
        named = any(word in text for word in ("key", "consumer", "unregistered callers"))
        return self.status == 403 and named and not self.file_missing

    @property
    def daily_quota(self) -> bool:
        """A per-day quota is exhausted: retrying within minutes cannot help."""
        for failure in self._detail("google.rpc.QuotaFailure"):
            violations = failure.get("violations")
            for violation in violations if isinstance(violations, list) else []:
                if isinstance(violation, Mapping) and "PerDay" in str(violation.get("quotaId", "")):
                    return True
        return False

    def summary(self) -> str:
        name = f" {self.code_name}" if self.code_name else ""
        return f"HTTP {self.status}{name}: {self.message}"[:1000]


def classify_error(
    answer: ErrorAnswer, model: str, setting: str = "GEMINI_MODEL"
) -> Verdict:
    """What a non-2xx answer from Gemini (or a relay in front of it) means for the user;
    a :class:`KeyFault` when it blames the key (quota spent, key refused), so a pool of
    keys can move the call to another."""
    err = GoogleError(answer)
    detail = err.summary()
    if answer.status == 429 and err.daily_quota:
        return KeyFault(ModelError(FailureKind.RATE_LIMITED, DAILY_QUOTA_MESSAGE, detail=detail),
                        rest=err.retry_after or DEFAULT_DAILY_REST)
    if answer.status == 429 and err.quota:
        rest = err.retry_after or DEFAULT_REST
        return KeyFault(ModelError(FailureKind.RATE_LIMITED, rate_limited_message(rest),
                                   detail=detail), rest=rest, retry=True)
    if err.key_refused:
        return KeyFault(ModelError(FailureKind.AUTH, AUTH_MESSAGE, detail=detail), refused=True)
    if answer.status == 400 and "payload size exceeds" in err.message.lower():
        return ModelError(FailureKind.BAD_REQUEST, TOO_LARGE_MESSAGE, detail=detail)
    if err.code_name == "FAILED_PRECONDITION" and "location" in err.message.lower():
        return ModelError(FailureKind.BAD_REQUEST, REGION_MESSAGE, detail=detail)
    return classify_status(
        answer.status,
        detail=detail,
        retry_after=err.retry_after,
        unknown_model=unknown_model_message(model, setting),
    )


def generate_url(base_url: str, model: str) -> str:
    """``{base}/v1beta/models/{model}:generateContent``; a base may carry a proxy path
    prefix, a trailing slash, or already end in ``/v1beta``."""
    base = base_url.strip().rstrip("/")
    if not base.endswith("/v1beta"):
        base += "/v1beta"
    return f"{base}/models/{model}:generateContent"


# ---------------------------------------------------------------------------------------
# The model


def endpoint_host(base_url: str) -> str:
    """The host of ``base_url`` (no path, no credentials), to name a relay in logs."""
    return urlsplit(base_url.strip()).hostname or ""


def api_keys(settings: Settings) -> tuple[str, ...]:
    """``GEMINI_API_KEY`` and ``GEMINI_API_KEYS``, or the one-line error that says where
    to get one."""
    keys = settings.gemini_keys()
    if not keys:
        raise SettingsError(
            "GEMINI_API_KEY is not set: create a key at https://aistudio.google.com/apikey "
            "(or use your relay's key) and put it in the environment or .env "
            "(several: GEMINI_API_KEYS=k1,k2)"
        )
    return keys


def api_key(settings: Settings) -> str:
    """The first key (see :func:`api_keys`)."""
    return api_keys(settings)[0]


class GeminiModel(HttpImageModel):
    """A Gemini image model behind Google's API or a relay speaking it
    (``auth_header``: see :func:`auth_headers`), its calls spread over ``api_key`` and
    ``api_keys`` (a :class:`~bot.models.key_pool.KeyPool` of its own: quotas are per
    model)."""

    def __init__(
        self,
        *,
        api_key: str = "",
        api_keys: Sequence[str] = (),
        model: str,
        base_url: str,
        auth_header: str = "x-goog-api-key",
        policy: CallPolicy | None = None,
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        max_input_images: int | None = None,
        model_setting: str = "GEMINI_MODEL",
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        model = model.strip().removeprefix("models/")
        pool = KeyPool([api_key, *api_keys])
        super().__init__(
            provider="gemini",
            model=model,
            secret=pool.secrets[0],
            keys=pool,
            policy=policy or CallPolicy(),
            aspect_ratio=aspect_ratio,
            image_size=image_size,
            max_input_images=max_input_images,
            model_setting=model_setting,
            client=client,
            sleep=sleep,
        )
        self._headers = {
            key.fingerprint: {**auth_headers(auth_header, key.secret),
                              "content-type": "application/json"}
            for key in pool.keys
        }
        self._url = generate_url(base_url, model)
        #: where the model answers from, for operators' log lines (a relay's host)
        self.endpoint = endpoint_host(base_url)
        self._pool = pool

    @property
    def key_pool(self) -> KeyPool:
        return self._pool

    def headers_for(self, key: Key) -> dict[str, str]:
        return self._headers[key.fingerprint]

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model: str | None = None, model_setting: str = "GEMINI_MODEL"
    ) -> GeminiModel:
        """The model named ``model`` (default ``GEMINI_MODEL``) with the Gemini settings."""
        return cls(
            api_keys=api_keys(settings),
            model=model or settings.gemini_model,
            base_url=settings.gemini_base_url,
            auth_header=settings.gemini_auth_header,
            model_setting=model_setting,
            **model_options(settings),
        )

    def build_body(self, request: GenerateRequest) -> dict[str, Any]:
        return request_body(request, aspect_ratio=self.aspect_ratio, image_size=self.image_size)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        return await self._call(
            request,
            self._url,
            self.headers_for,
            body=self.build_body,
            read=parse_answer,
            classify=lambda answer: classify_error(answer, self.name, self.model_setting),
        )


if TYPE_CHECKING:
    _protocol_check: type[ImageModel] = GeminiModel
