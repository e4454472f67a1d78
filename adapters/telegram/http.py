"""The Bot API's HTTP layer as Chatbrush uses it: flood limits, a connection pool without
per-request scans, and the bot token kept out of every log line (it sits in every URL)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.ext import AIORateLimiter
from telegram.request import BaseRequest, RequestData

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


class AiohttpRequest(BaseRequest):
    """PTB's request seam (``BaseRequest.do_request``) on aiohttp.

    httpcore, under PTB's default request class, checks every pooled connection (a poll
    and a getpeername each) for every request it assigns: with a pool worth having, that
    was the largest share of the event loop's time in a burst. aiohttp's connector hands
    out an idle kept-alive connection without scanning, and queues requests beyond
    ``connections`` in order.
    """

    def __init__(self, *, connections: int, read_timeout: float = 5.0,
                 write_timeout: float = 5.0, connect_timeout: float = 5.0,
                 media_write_timeout: float = 60.0) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = (self._connect_timeout if isinstance(connect_timeout, DefaultValue)
                   else connect_timeout)
        write = ((self._media_write_timeout if files else self._write_timeout)
                 if isinstance(write_timeout, DefaultValue) else write_timeout)
        data: aiohttp.FormData | dict[str, str] | None = None
        if files:
            form = aiohttp.FormData()
            for name, value in (request_data.json_parameters if request_data else {}).items():
                form.add_field(name, value)
            for name, (filename, content, mime_type) in files.items():
                form.add_field(name, content, filename=filename, content_type=mime_type)
            data = form
        elif request_data is not None:
            data = request_data.json_parameters
        # aiohttp has no write timeout: the whole exchange may take connect + write + read
        total = None if read is None else (connect or 0) + (write or 0) + read
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)
        try:
            async with self._session.request(method, url, data=data,
                                             timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
