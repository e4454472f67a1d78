"""The private metrics server (and the liveness answer it shares with the public one).

What every webhook request must pass before the bot reads it (a capped body, one short log
line per kind of rejection) is in :mod:`bot.kit.http_guard`, shared with the adapters that
check their own secret or signature. ``/metrics`` is private by default: on its own port
bound to 127.0.0.1, optionally behind a bearer token, and on the public port only when asked.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.kit import metrics
from bot.kit.http_guard import Rejections

if TYPE_CHECKING:
    from bot.core.config import Settings

log = logging.getLogger("chatbrush.web")

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
