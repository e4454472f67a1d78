"""A fake OpenAI-compatible ``/chat/completions`` service, and a host for linked pictures.

:class:`FakeOpenAI` answers like OpenRouter does for its Gemini image models (the shapes in
``tests/fixtures/openai_*.json``, sources in ``tests/fixtures/SOURCES.md``): the key in
``Authorization: Bearer``, errors as ``{"error": {"message", "code"}}``, pictures only when
the request asks for ``modalities: ["image", "text"]``, and usage with
``completion_tokens_details.image_tokens``. It is as strict as such a service where our
client could go wrong: an unknown model, a broken ``image_url`` data URI or an unknown
``image_config`` field is refused with a 400.

Every answer can be given in the shape another relay uses (``shape=``): ``images``
(``message.images[]``, the default), ``markdown`` (a ``![image](data:…)`` in
``content``), ``content_parts`` (``image_url`` parts in ``content``), and the link forms
``markdown_url`` and ``content_parts_url``, whose picture is served by a
:class:`FakeImageHost`.

    async with FakeImageHost() as host, FakeOpenAI(image_host=host) as fake:
        model = OpenAICompatModel(api_key=fake.api_key, base_url=fake.base_url, ...)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.gemini import ASPECT_RATIOS, IMAGE_SIZES, invert_image, make_png

SHAPES = ("images", "markdown", "content_parts", "markdown_url", "content_parts_url")
IMAGE_TOKENS = 1290


async def _serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, int]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    # a deliberately slow answer nobody waits for any more must not hold up the test's end
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def error_body(code: int, message: str, **fields: Any) -> dict[str, Any]:
    """OpenRouter's error shape (OpenAI's adds ``type`` and a string ``code``)."""
    return {"error": {"message": message, "code": code, **fields}}


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _decode_data_uri(url: str) -> bytes | None:
    header, comma, payload = url.partition(",")
    if not comma or not header.startswith("data:image/") or ";base64" not in header:
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Linked pictures


@dataclass
class HostedFile:
    data: bytes
    headers: dict[str, str]
    delay: float = 0.0
    redirect_to: str | None = None
    chunked: bool = False


@dataclass
class HostRequest:
    path: str
    headers: CIMultiDict[str]


class FakeImageHost:
    """Serves pictures at ``http://127.0.0.1:<port>/…`` and records every request."""

    def __init__(self) -> None:
        self.files: dict[str, HostedFile] = {}
        self.requests: list[HostRequest] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeImageHost:
        self._runner, self.port = await _serve(self._handle)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def put(
        self,
        data: bytes,
        *,
        content_type: str = "image/png",
        path: str | None = None,
        delay: float = 0.0,
        redirect_to: str | None = None,
        chunked: bool = False,
    ) -> str:
        """Serve ``data`` (or a 302 to ``redirect_to``), in chunks without a length if
        ``chunked``; returns the path."""
        path = path or f"/files/{secrets.token_hex(6)}.png"
        headers = {"content-type": content_type}
        self.files[path] = HostedFile(data, headers, delay, redirect_to, chunked)
        return path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(HostRequest(request.path, CIMultiDict(request.headers)))
        hosted = self.files.get(request.path)
        if hosted is None:
            return web.Response(status=404, text="not found")
        if hosted.delay:
            await asyncio.sleep(hosted.delay)
        if hosted.redirect_to:
            raise web.HTTPFound(hosted.redirect_to)
        if not hosted.chunked:
            return web.Response(body=hosted.data, headers=hosted.headers)
        response = web.StreamResponse(headers=hosted.headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(hosted.data), 16_384):
            await response.write(hosted.data[start : start + 16_384])
        await response.write_eof()
        return response


# ---------------------------------------------------------------------------------------
# The chat service


@dataclass
class RecordedChat:
    """One request as received: ``json`` is None when the body was not JSON."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    json: Any
    status: int = 0

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        data = self.json if isinstance(self.json, dict) else {}
        messages = data.get("messages")
        return messages if isinstance(messages, list) else []

    def parts(self, role: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in self.messages:
            if role is not None and message.get("role") != role:
                continue
            content = message.get("content")
            if isinstance(content, str):
                out.append({"type": "text", "text": content})
            elif isinstance(content, list):
                out.extend(p for p in content if isinstance(p, dict))
        return out

    def images(self, role: str | None = None) -> list[bytes]:
        """Decoded ``image_url`` data URIs, in order."""
        found = []
        for part in self.parts(role):
            url = (part.get("image_url") or {}).get("url", "")
            data = _decode_data_uri(url) if part.get("type") == "image_url" else None
            if data is not None:
                found.append(data)
        return found

    @property
    def prompt(self) -> str:
        """The text of the last user message (what the user just asked)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return " ".join(p["text"] for p in content if p.get("type") == "text").strip()
        return ""


@dataclass
class Scripted:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    shape: str = "images"
    link_host: str = "127.0.0.1"
    reasoning: Any = None


class _Reject(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class FakeOpenAI:
    """The fake service at ``base_url`` (``…/api/v1``, as OpenRouter's)."""

    def __init__(
        self,
        *,
        api_key: str = "sk-or-v1-fake-key-0123456789",
        image_host: FakeImageHost | None = None,
    ) -> None:
        self.api_key = api_key
        self.image_host = image_host
        self.requests: list[RecordedChat] = []
        #: every JSON body the fake answered with, in order
        self.answers: list[Any] = []
        self.port = 0
        self._queue: collections.deque[Scripted] = collections.deque()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def last(self) -> RecordedChat:
        return self.requests[-1]

    async def __aenter__(self) -> FakeOpenAI:
        self._runner, self.port = await _serve(self._handle)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- scripting

    def enqueue(
        self,
        body: Any = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        delay: float = 0.0,
        times: int = 1,
        shape: str = "images",
        link_host: str = "127.0.0.1",
        reasoning: Any = None,
    ) -> None:
        """Queue the next answer(s): a JSON ``body``, ``raw`` bytes, or (both None) the
        default answer in ``shape``, linking to ``link_host`` for the URL shapes, with
        ``reasoning_details`` when ``reasoning`` is given."""
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}")
        for _ in range(times):
            self._queue.append(
                Scripted(status, body, raw, dict(headers or {}), delay, shape, link_host, reasoning)
            )

    def enqueue_error(
        self,
        status: int,
        message: str = "Provider returned error",
        *,
        retry_after: str | None = None,
        times: int = 1,
        **fields: Any,
    ) -> None:
        headers = {"retry-after": retry_after} if retry_after else None
        self.enqueue(
            error_body(status, message, **fields), status=status, headers=headers, times=times
        )

    # -- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        recorded = RecordedChat(
            request.method, request.path, CIMultiDict(request.headers), body, parsed
        )
        self.requests.append(recorded)
        try:
            status, headers, payload = await self._answer(recorded)
        except _Reject as rejected:
            status, headers, payload = rejected.status, {}, rejected.body
        recorded.status = status
        if isinstance(payload, bytes):
            return web.Response(status=status, body=payload, headers=headers)
        self.answers.append(payload)
        return web.json_response(payload, status=status, headers=headers)

    async def _answer(self, req: RecordedChat) -> tuple[int, dict[str, str], Any]:
        if req.method != "POST" or not req.path.endswith("/chat/completions"):
            raise _Reject(404, error_body(404, "Not Found"))
        if req.bearer is None:
            raise _Reject(401, error_body(401, "No auth credentials found"))
        if req.bearer != self.api_key:
            raise _Reject(401, error_body(401, "User not found."))
        data = req.json
        if not isinstance(data, dict):
            raise _Reject(400, error_body(400, "Invalid JSON body"))
        self._validate(data)
        scripted = self._queue.popleft() if self._queue else Scripted()
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        if scripted.raw is not None:
            return scripted.status, scripted.headers, scripted.raw
        if scripted.body is not None:
            return scripted.status, scripted.headers, scripted.body
        return 200, scripted.headers, await asyncio.to_thread(self._default, req, scripted)

    def _validate(self, data: dict[str, Any]) -> None:
        model = data.get("model")
        if not isinstance(model, str) or "image" not in model:
            raise _Reject(400, error_body(400, f"{model} is not a valid model ID"))
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Reject(400, error_body(400, "messages must be a non-empty array"))
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "user",
                "assistant",
            ):
                raise _Reject(400, error_body(400, f"messages[{i}] has an invalid role"))
            content = message.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise _Reject(400, error_body(400, f"messages[{i}].content is invalid"))
            for part in content:
                self._validate_part(part, i)
        modalities = data.get("modalities", [])
        if not isinstance(modalities, list) or not set(modalities) <= {"image", "text"}:
            raise _Reject(400, error_body(400, f"Invalid modalities: {modalities}"))
        config = data.get("image_config")
        if config is None:
            return
        if not isinstance(config, dict) or not set(config) <= {"aspect_ratio", "image_size"}:
            raise _Reject(400, error_body(400, f"Invalid image_config: {config}"))
        if config.get("aspect_ratio", "1:1") not in ASPECT_RATIOS:
            raise _Reject(400, error_body(400, "Invalid aspect_ratio"))
        if config.get("image_size", "1K") not in IMAGE_SIZES:
            raise _Reject(400, error_body(400, "Invalid image_size"))

    @staticmethod
    def _validate_part(part: Any, i: int) -> None:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            return
        if kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if isinstance(url, str) and (
                url.startswith("https://") or _decode_data_uri(url) is not None
            ):
                return
            raise _Reject(400, error_body(400, f"messages[{i}]: invalid image_url"))
        raise _Reject(400, error_body(400, f"messages[{i}]: invalid content part"))

    def _default(self, req: RecordedChat, scripted: Scripted) -> dict[str, Any]:
        """Text plus an inverted copy of the newest input picture (or a new one), in
        the scripted shape; only text when the request did not ask for images."""
        data = req.json
        prompt = req.prompt
        text = f"Here is the result for: {prompt[:200]}" if prompt else "Here is your image."
        wants_image = "image" in data.get("modalities", [])
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if wants_image:
            inputs = req.images()
            png = invert_image(inputs[-1]) if inputs else None
            png = png or make_png(seed=len(self.requests))
            self._shape(message, text, png, scripted)
        if scripted.reasoning is not None:
            message["reasoning_details"] = scripted.reasoning
        prompt_tokens = max(1, len(prompt) // 4) + 258 * len(req.images())
        completion = max(1, len(text) // 4) + (IMAGE_TOKENS if wants_image else 0)
        return {
            "id": f"gen-{int(time.time())}-{secrets.token_hex(8)}",
            "provider": "Google",
            "model": data["model"],
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": "stop",
                    "native_finish_reason": "STOP",
                    "index": 0,
                    "message": message,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "image_tokens": IMAGE_TOKENS if wants_image else 0,
                },
                "cost": 0.0387,
            },
        }

    def _shape(self, message: dict[str, Any], text: str, png: bytes, scripted: Scripted) -> None:
        if scripted.shape.endswith("_url"):
            if self.image_host is None:
                raise RuntimeError("a link shape needs FakeOpenAI(image_host=...)")
            url = self.image_host.url(self.image_host.put(png), scripted.link_host)
        else:
            url = data_uri(png)
        if scripted.shape == "images":
            message["images"] = [{"type": "image_url", "image_url": {"url": url}, "index": 0}]
        elif scripted.shape.startswith("markdown"):
            message["content"] = f"{text}\n\n![image]({url})"
        else:
            message["content"] = [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ]
