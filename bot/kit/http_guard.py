"""Reading a request that faces the internet without trusting it.

A webhook body is read with a cap, whatever ``Content-Length`` says, so a request that fails
verification can never cost more memory than a small multiple of the limit; JSON is parsed
only into an object, and nesting too deep to parse is a bad request, not a crash. Rejections
are logged in one short line per kind and minute (a flood of forgeries must not flood the log
too), never with a header value. The adapters and the web app share these; nothing here knows
the project.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

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
