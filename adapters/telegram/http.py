"""The Bot API's HTTP layer as Chatbrush uses it: flood limits, a connection pool without
per-request scans, and the bot token kept out of every log line (it sits in every URL)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter
from telegram.request import BaseRequest, RequestData

from adapters.telegram.pacing import pace_for_chat_id
from bot.kit.logs import RedactSecrets
from bot.kit.send_window import ChatWindow

log = logging.getLogger(__name__)

#: Endpoints Telegram does not count as messages: they skip the per-chat pace (a chat
#: action every few seconds would otherwise eat a group's 20 messages a minute).
_UNMETERED = frozenset({"sendChatAction", "getChatMember", "getFile", "getMe", "getUpdates"})
#: what Telegram lets a bot send overall, a second
BOT_WIDE_PER_SECOND = 30
#: a 429 holds only its own chat, so waiting it out again costs the others nothing; several
#: processes sending to one chat each keep their own count and may meet it more than once
RETRIES_AFTER_429 = 8


class FloodLimiter(BaseRateLimiter[int]):
    """Telegram's flood limits, kept per chat.

    Replaces python-telegram-bot's ``AIORateLimiter``, which pauses *every* chat while
    any one of them waits out a 429 and lets a group get more than its 20 messages a
    minute. Here each chat has its own window (its pace from
    :func:`adapters.telegram.platform.pace_for_chat_id`) and its own pause: a 429 for
    one chat holds only that chat, for the ``retry_after`` Telegram named, then the call
    is tried again (up to ``max_retries`` times). The bot-wide 30 a second applies to
    all of them together.
    """

    def __init__(self, *, max_retries: int = RETRIES_AFTER_429, paced: bool = True) -> None:
        """``paced=False``: no waiting before a call, only the retries after a 429 (a
        benchmark measuring what the process itself can do)."""
        self._max_retries = max_retries
        self._paced = paced
        self._overall = AsyncLimiter(BOT_WIDE_PER_SECOND if paced else 1e9, 1)
        self._chats: dict[str, ChatWindow] = {}

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        key = None if chat_id is None or endpoint in _UNMETERED else str(chat_id)
        window = self._window(key)
        pace = pace_for_chat_id(key) if key is not None and self._paced else None
        cost = len(data.get("media") or ()) or 1
        max_retries = rate_limit_args if rate_limit_args is not None else self._max_retries
        try:
            for attempt in range(max_retries + 1):
                if window is not None:
                    await window.ready(pace, cost)  # a pause holds even when unpaced
                async with self._overall:
                    try:
                        return await callback(*args, **kwargs)
                    except RetryAfter as exc:
                        if attempt == max_retries:
                            raise
                        wait = retry_seconds(exc) + 0.1
                        log.info("Telegram asked chat %s to wait %.0fs", key, wait)
                if window is not None:
                    window.pause(wait)  # only this chat waits; the others go on
                else:
                    await asyncio.sleep(wait)
        finally:
            self._forget_idle(key)
        raise AssertionError("unreachable")  # pragma: no cover

    def _window(self, key: str | None) -> ChatWindow | None:
        if key is None:
            return None
        window = self._chats.get(key)
        if window is None:
            window = self._chats[key] = ChatWindow()
        return window

    def _forget_idle(self, key: str | None) -> None:
        window = self._chats.get(key) if key is not None else None
        if window is not None and window.idle():
            del self._chats[key]  # type: ignore[arg-type]


def retry_seconds(exc: RetryAfter) -> float:
    """``retry_after`` as seconds, whichever type this python-telegram-bot gives it."""
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value if value is not None else 1)


def scrub(text: str) -> str:
    """Error texts can quote the request URL, which holds the token: keep only the gist."""
    return re.sub(r"/bot[^/\s]+", "/bot<telegram-token>", text)[:200]


def install_redaction(token: str) -> None:
    """Mask the token on the libraries' own loggers too, with the kit's one scrubber (any
    case, percent-encoded): records reach handlers other than the root's (pytest's, an
    embedding program's) before :func:`bot.kit.logs.setup_logging` sees them."""
    redact = RedactSecrets([token])
    names = ["httpx", "httpcore", "telegram", "telegram.ext", "telegram.Bot", "telegram.ext.ExtBot"]
    names += [n for n in logging.Logger.manager.loggerDict if n.startswith(("telegram", "httpx"))]
    for name in set(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) and token in f.secrets for f in logger.filters):
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
