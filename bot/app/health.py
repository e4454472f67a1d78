"""``/healthz`` and ``/readyz``: what an orchestrator asks before it restarts a process or
sends it traffic.

Liveness (``/healthz``) is only "the event loop answers": a process whose database is down
is not helped by a restart. Readiness (``/readyz``) tells the truth about what answering a
user needs: the store answers a trivial query within a second, the inbox is not stuck (its
oldest message that nobody works on is younger than ``CHATBRUSH_READY_INBOX_AGE``), and
every platform connection an adapter can vouch for is up. Not ready is ``503`` with a
one-line reason, so ``curl`` and the logs say why.

``chatbrush web`` mounts both on its own port (with a middleware that turns "database
down" into ``503``: Telegram and Slack deliver the update again later); ``chatbrush run``
serves them on ``CHATBRUSH_HEALTH_PORT`` (127.0.0.1 unless ``CHATBRUSH_HEALTH_HOST``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bot.core.ports.inbox import InboxStore
from bot.core.ports.usage import UsageStore
from bot.kit import metrics
from bot.kit.formatting import usd
from bot.policy.budgets import month_start

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

#: seconds the store gets to answer the readiness query
STORE_ANSWER_WITHIN = 1.0
#: at most one "answered 503" line per this many seconds
LOG_EVERY = 60.0
#: the month's spend (a sum over the month's calls) is asked at most this often
SPEND_EVERY = 60.0


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class RateLimitedLog:
    """A warning at most once per ``every`` seconds, saying how many it stood for."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._last = -math.inf
        self._unsaid = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        self._unsaid += 1
        if now - self._last < self.every:
            return
        log.warning(message + " (%d time(s) since the last such line)", *args, self._unsaid)
        self._last, self._unsaid = now, 0


async def connection_problem(adapter: object) -> str | None:
    """What an adapter that can tell says about its platform connection (its optional
    ``async connection_problem()``: a line while down, None while up); None otherwise."""
    check: Callable[[], Awaitable[str | None]] | None = getattr(
        adapter, "connection_problem", None)
    if check is None:
        return None
    try:
        async with asyncio.timeout(STORE_ANSWER_WITHIN):
            return await check()
    except TimeoutError:
        return "its connection check did not answer within a second"


class Health:
    """The two checks, over the running store and adapters."""

    def __init__(self, store: InboxStore, adapters: Sequence[object] = (), *,
                 stuck_after: float = 300.0, usage: UsageStore | None = None) -> None:
        self.store = store
        self.usage = usage
        self._spend_asked = -math.inf
        self.adapters = list(adapters)
        self.stuck_after = stuck_after
        self._not_ready_log = RateLimitedLog()
        self._down_log = RateLimitedLog()

    async def problem(self) -> tuple[str | None, dict[str, Any]]:
        """``(None, details)`` when ready, else the one-line reason it is not."""
        try:
            async with asyncio.timeout(STORE_ANSWER_WITHIN):
                oldest = await self.store.inbox_oldest_stuck()
        except TimeoutError:
            return f"the database did not answer within {STORE_ANSWER_WITHIN:g}s", {}
        except Exception as exc:
            return f"the database does not answer: {one_line(exc)}", {}
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        metrics.INBOX_OLDEST_WAITING.set(age)
        await self._refresh_spend()
        details: dict[str, Any] = {"store": "ok", "oldest_waiting_seconds": round(age, 1)}
        if age > self.stuck_after:
            return (f"the inbox is stuck: a message has waited {age:.0f}s for a worker "
                    f"(more than CHATBRUSH_READY_INBOX_AGE={self.stuck_after:g})"), details
        for adapter in self.adapters:
            trouble = await connection_problem(adapter)
            if trouble:
                return f"{getattr(adapter, 'name', 'platform')}: {trouble}", details
        return None, details

    async def _refresh_spend(self) -> None:
        """The month's bot-wide spend for the "near the budget" alert: every process reads
        the shared store, so it is right however many processes run."""
        now = time.time()
        if self.usage is None or now - self._spend_asked < SPEND_EVERY:
            return
        self._spend_asked = now
        try:
            async with asyncio.timeout(STORE_ANSWER_WITHIN):
                report = await self.usage.call_report(since=month_start(now), top=0)
        except Exception as exc:  # readiness must not fail for a gauge
            log.debug("month's spend not refreshed: %s", one_line(exc))
            return
        metrics.SPEND_THIS_MONTH.set(usd(report.cost_micros))

    async def healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        reason, details = await self.problem()
        if reason is None:
            return web.json_response({"ok": True, **details})
        self._not_ready_log.warning("not ready: %s", reason)
        return web.json_response({"ok": False, "reason": reason}, status=503)

    def mount(self, app: web.Application) -> None:
        """The two routes, and "database down" answered 503 on every other route."""
        from aiohttp import web

        @web.middleware
        async def database_down_is_503(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            try:
                return await handler(request)
            except ConnectionError as exc:  # the store's DatabaseUnavailable among them
                self._down_log.warning("answered %s %s with 503: %s", request.method,
                                       request.path, one_line(exc))
                return web.json_response({"ok": False, "error": "database unavailable"},
                                         status=503)

        app.middlewares.append(database_down_is_503)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)


async def serve_health(health: Health, host: str, port: int) -> web.AppRunner:
    """The health routes alone on a small port (``chatbrush run``): the caller cleans up
    the runner it gets."""
    from aiohttp import web

    app = web.Application()
    health.mount(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health on http://%s:%s/healthz and /readyz", host, port)
    return runner
