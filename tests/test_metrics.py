"""Operators see what the bot does, and only operators: /healthz and Prometheus /metrics on
the private metrics server, /metrics on the public webhook port only when asked."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import REGISTRY

from bot.app.cli import build_web_app
from bot.app.runtime import Runtime
from bot.app.web import metrics_app, start_metrics_server
from bot.core.config import load_settings
from bot.core.events import ChatKey
from bot.kit.http_guard import Rejections
from tests.fakes.gemini import FakeGemini
from tests.harness import Chat, RecordingPlatform, photo, running_bot, settings_for


async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """The private metrics server, as CHATBRUSH_METRICS_PORT starts it."""
    async for url in serve(metrics_app(load_settings())):
        yield url


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Runtime, FakeGemini, RecordingPlatform]]:
    platform = RecordingPlatform()
    async with FakeGemini() as fake, running_bot(settings_for(tmp_path, fake), platform) as bot:
        yield bot, fake, platform


def calls(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "chatbrush_model_calls_total", {"model": "gemini-2.5-flash-image", "outcome": outcome}
    )
    return value or 0.0


async def test_health_and_metrics_reflect_model_calls(
    server: str, engine: tuple[Runtime, FakeGemini, RecordingPlatform]
) -> None:
    bot, fake, platform = engine
    ok_before, refused_before = calls("ok"), calls("refused")
    dm = Chat(bot, platform, ChatKey("telegram", "42"), private=True)
    await dm.say("watercolor", photo())
    fake.enqueue_block("SAFETY")
    await dm.say("something else")
    async with httpx.AsyncClient(base_url=server) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"ok": True}
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "chatbrush_model_call_seconds_bucket" in scraped.text
    assert calls("ok") == ok_before + 1
    assert calls("refused") == refused_before + 1
    assert 'chat_id' not in scraped.text  # no high-cardinality labels


async def test_the_metrics_server_serves_nothing_else(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/slack/events")).status_code == 404
        assert (await client.get("/metrics/../admin")).status_code == 404


async def test_the_public_port_has_no_metrics_unless_asked() -> None:
    app, mounted = build_web_app([], settings=load_settings())
    assert mounted == []
    async for url in serve(app):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 404


async def test_a_metrics_token_is_asked_for_wherever_metrics_are_served() -> None:
    settings = load_settings(chatbrush_metrics_on_web_port=True,
                             chatbrush_metrics_token="let-me-count")
    for app in (build_web_app([], settings=settings)[0], metrics_app(settings)):
        async for url in serve(app):
            async with httpx.AsyncClient(base_url=url) as client:
                anonymous = await client.get("/metrics")
                wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
                right = await client.get("/metrics",
                                         headers={"Authorization": "Bearer let-me-count"})
            assert anonymous.status_code == wrong.status_code == 401
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
            assert "chatbrush_" not in anonymous.text + wrong.text
            assert right.status_code == 200 and "chatbrush_model_calls" in right.text


async def test_the_metrics_port_binds_loopback_unless_told_otherwise() -> None:
    """What `chatbrush run` and `web` start for CHATBRUSH_METRICS_PORT."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    runner = await start_metrics_server(load_settings(chatbrush_metrics_port=port))
    assert runner is not None
    try:
        [site] = runner.sites
        assert site.name == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
    finally:
        await runner.cleanup()
    assert await start_metrics_server(load_settings()) is None  # off unless a port is set


def test_rejections_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    rejections = Rejections(logging.getLogger("gate"), interval=60, clock=lambda: now[0])
    request = make_mocked_request("POST", "/hook")
    for _ in range(5):
        rejections.note(request, endpoint="hook", status=403, reason="forbidden")
    rejections.note(request, endpoint="hook", status=413, reason="body too large")
    now[0] += 61
    rejections.note(request, endpoint="hook", status=403, reason="forbidden")
    assert [r.getMessage() for r in caplog.records] == [
        "hook: rejected a request from ?: forbidden (HTTP 403)",
        "hook: rejected a request from ?: body too large (HTTP 413)",
        "hook: rejected a request from ?: forbidden (HTTP 403) (4 more since the last such "
        "line)",
    ]
