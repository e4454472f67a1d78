"""The Bot API's HTTP layer as Chatbrush uses it: flood limits, a gated connection pool,
and the bot token kept out of every log line (it sits in every request URL)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from telegram.ext import AIORateLimiter
from telegram.request import HTTPXRequest

#: Endpoints Telegram does not count as messages: they skip the flood limiter's budget
#: (a chat action every few seconds would otherwise eat a group's 20 messages a minute).
_UNMETERED = frozenset({"sendChatAction", "getChatMember", "getFile", "getMe", "getUpdates"})


class FloodLimiter(AIORateLimiter):
    """``AIORateLimiter`` that still retries every call on 429, but only meters messages."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint in _UNMETERED:
            data = {k: v for k, v in data.items() if k != "chat_id"}
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


class RedactToken(logging.Filter):
    """Keep the bot token (it sits in every Bot API URL) out of library log lines."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token
        # file downloads carry it URL-encoded (``123%3AABC``)
        self._forms = {token, quote(token, safe=""), quote(token)}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(form in message for form in self._forms):
            for form in self._forms:
                message = message.replace(form, "<telegram-token>")
            record.msg = message
            record.args = None
        return True


def scrub(text: str) -> str:
    """Error texts can quote the request URL, which holds the token: keep only the gist."""
    return re.sub(r"/bot[^/\s]+", "/bot<telegram-token>", text)[:200]


def install_redaction(token: str) -> None:
    redact = RedactToken(token)
    names = ["httpx", "httpcore", "telegram", "telegram.ext", "telegram.Bot", "telegram.ext.ExtBot"]
    names += [n for n in logging.Logger.manager.loggerDict if n.startswith(("telegram", "httpx"))]
    for name in set(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) and f._token == token for f in logger.filters):
            logger.addFilter(redact)


class GatedRequest(HTTPXRequest):
    """PTB's HTTPX request with the waiting done in an asyncio queue, not in httpcore.

    httpcore re-scans every connection for every queued request each time one finishes,
    which turns a burst of a few hundred concurrent sends into quadratic CPU; queueing
    in front of a modest pool keeps each send O(1) and never hits the pool timeout.
    """

    def __init__(self, size: int) -> None:
        super().__init__(connection_pool_size=size, media_write_timeout=60.0)
        self._gate = asyncio.Semaphore(size)

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        async with self._gate:
            return await super().do_request(*args, **kwargs)
