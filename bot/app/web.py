"""The HTTP gate: what every request must pass before the bot reads it.

Webhooks face the internet, so a request is judged on what is cheap to check first: its
declared size, then (in the adapter) its secret or signature, and only then is it parsed.
Bodies are read with a cap, whatever ``Content-Length`` says, so a request that fails can
never cost more memory than a small multiple of ``CHATBRUSH_MAX_REQUEST_BYTES``. Rejections
are logged in one short line per kind and minute (a flood of forgeries must not flood the
log too), never with a header value.

The operators' endpoints live here as well: ``/metrics`` is private by default, on its own
port bound to 127.0.0.1, optionally behind a bearer token.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.kit import metrics

if TYPE_CHECKING:
    from bot.core.config import Settings

log = logging.getLogger("chatbrush.web")

#: how often each kind of rejected request is logged at most
REJECTION_LOG_INTERVAL = 60.0
READ_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The request body is over the limit (said so, or found so while reading)."""


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it is known to exceed ``limit``.

    A declared ``Content-Length`` over the limit is refused before one byte is read; a
    chunked or lying request is refused once the bytes read pass the limit.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge
    body = bytearray()
    while chunk := await request.content.read(READ_CHUNK):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or ``None`` for malformed, non-object or absurdly nested
    JSON (the parser gives up on deep nesting with a RecursionError: caught, not a 500)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class Rejections:
    """Logs rejected requests: one line per (endpoint, status) and interval, saying how
    many more were rejected since, so a misconfigured secret is visible and a flood is not."""

    def __init__(self, logger: logging.Logger, *, interval: float = REJECTION_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int], tuple[float, int]] = {}

    def note(self, request: web.Request, *, endpoint: str, status: int, reason: str) -> None:
        key = (endpoint, status)
        now = self._clock()
        last, unlogged = self._seen.get(key, (-math.inf, 0))
        if now - last < self._interval:
            self._seen[key] = (last, unlogged + 1)
            return
        self._seen[key] = (now, 0)
        more = f" ({unlogged} more since the last such line)" if unlogged else ""
        self._log.warning("%s: rejected a request from %s: %s (HTTP %d)%s",
                          endpoint, request.remote or "?", reason, status, more)

    def reply(self, request: web.Request, *, endpoint: str, status: int,
              reason: str) -> web.Response:
        """Note the rejection and answer it in a few bytes of JSON."""
        self.note(request, endpoint=endpoint, status=status, reason=reason)
        return web.json_response({"ok": False, "error": reason}, status=status)


# ---------------------------------------------------------------------- operators' endpoints
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def metrics_handler(token: str | None) -> Any:
    """``GET /metrics``; with ``token``, only for ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode() if token else None
    rejections = Rejections(log)

    async def prometheus(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                rejections.note(request, endpoint="/metrics", status=401,
                                reason="missing or wrong bearer token")
                return web.Response(status=401, text="bearer token required\n",
                                    headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    return prometheus


def metrics_token(settings: Settings) -> str | None:
    token = settings.chatbrush_metrics_token
    return token.get_secret_value() if token is not None else None


def metrics_app(settings: Settings) -> web.Application:
    """The private metrics server: ``/metrics`` and ``/healthz``, 404 on anything else."""
    app = web.Application(client_max_size=4096)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(metrics_token(settings)))
    return app


async def start_metrics_server(settings: Settings) -> web.AppRunner | None:
    """Serve :func:`metrics_app` on CHATBRUSH_METRICS_HOST:CHATBRUSH_METRICS_PORT, if set."""
    port = settings.chatbrush_metrics_port
    if not port:
        return None
    runner = web.AppRunner(metrics_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.chatbrush_metrics_host, port).start()
    log.info("metrics on http://%s:%s/metrics%s", settings.chatbrush_metrics_host, port,
             " (bearer token required)" if settings.chatbrush_metrics_token else "")
    return runner
