"""Shared test setup: no test may reach anything but loopback.

Like python-telegram-bot's ``OfflineRequest``, a guard makes any connection to a
non-loopback address fail loudly, so a missing base-URL override can never reach
Telegram, Slack or Google.

The ``fake``, ``platform`` and ``bot`` fixtures are the engine as an adapter drives it
(tests.harness) against the fake Gemini service; a module may define its own.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.runtime import Runtime
from tests.backends import BACKENDS, give_back, store_url
from tests.fakes.gemini import FakeGemini
from tests.harness import RecordingPlatform, running_bot, settings_for

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkAccessError(RuntimeError):
    pass


def _check_host(host: Any) -> None:
    if not isinstance(host, str) or host in ("localhost", ""):
        return
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise NetworkAccessError(f"test tried to resolve non-loopback host {host!r}") from None
    if not addr.is_loopback:
        raise NetworkAccessError(f"test tried to reach non-loopback address {host!r}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_host(address[0])
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_host(address[0])
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    _check_host(host)
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that touches a non-loopback address."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Tests never read the developer's real credentials or ``.env``."""
    import os

    for name in list(os.environ):
        prefixes = ("GEMINI_", "OPENAI_", "TELEGRAM_", "SLACK_", "DISCORD_", "CHATBRUSH_")
        if name.startswith(prefixes) or name in ("PORT", "DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
              ) -> AsyncIterator[Runtime]:
    async with running_bot(settings_for(tmp_path, fake), platform) as runtime:
        yield runtime


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Any) -> str:
    """Run a test once per storage backend: on PostgreSQL, ``DATABASE_URL`` names a fresh
    database (it wins over the SQLite file the test's settings name), as in a deployment.
    Suites opt in with ``pytestmark = pytest.mark.usefixtures("store_backend")``."""
    backend: str = request.param
    if backend != "sqlite":
        url = store_url(backend, tmp_path)
        monkeypatch.setenv("DATABASE_URL", url)
        request.addfinalizer(lambda: give_back(backend, url))
    return backend


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow run first, in lanes of their own: one lane for every two
    pytest-xdist workers (``-n``; ``--dist loadgroup`` in pyproject.toml).

    Each slow test starts processes of its own (a bot, a benchmark, PostgreSQL clients),
    so several at once on two cores starve each other past their time limits (``-n 4``
    timed three out); one lane at a time runs them beside the short tests, which fill the
    other workers, and starting them first leaves no long test for the end."""
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    lanes = max(1, workers // 2)
    slow = [item for item in items if item.get_closest_marker("slow")]
    for n, item in enumerate(slow):
        item.add_marker(pytest.mark.xdist_group(f"slow-{n % lanes}"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the PostgreSQL server if a test started one (under pytest-xdist each worker
    has a server of its own and stops it)."""
    from tests.postgres_server import stop_shared_server

    stop_shared_server()
