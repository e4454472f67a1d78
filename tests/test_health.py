"""Health that tells the truth, and the operator's one-line failures (issue 19).

``/readyz`` on a real SQLite store: 200 while it answers, 503 with the reason while its one
database thread is held past a second or a message has waited too long for a worker, and
200 again after. ``chatbrush run`` serves both routes on ``CHATBRUSH_HEALTH_PORT``. A second
real ``chatbrush`` on a busy SQLite file says so in one line; the catalog tool leaves the
tree clean when no message changed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.app.cli import build_web_app
from bot.app.health import STORE_ANSWER_WITHIN, Health
from bot.core.events import ChatKey, Incoming, Sender
from bot.kit.i18n import catalogs
from storage.sqlite import SqliteStore
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.processes import REPO, run_chatbrush, start_chatbrush
from tests.test_telegram_cli import free_port, stop

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "chatbrush.db")
    yield opened
    await opened.close()


async def serve(health: Health) -> tuple[web.AppRunner, str]:
    app, _ = build_web_app([], health=health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def ask(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def until_status(url: str, wanted: int) -> tuple[int, dict[str, object]]:
    """Ask until ``url`` answers ``wanted`` (the process acts on what the fake answered a
    moment after the fake recorded the call); the last answer after 10 s."""
    for _ in range(100):
        status, body = await ask(url)
        if status == wanted:
            break
        await asyncio.sleep(0.1)
    return status, body


def message(n: int) -> Incoming:
    return Incoming(chat=ChatKey("telegram", "42"), message_id=str(n),
                    sender=Sender(id="7", display_name="Ann"), text="make it blue", is_private=True)


async def test_ready_while_the_store_answers_and_503_with_the_reason_while_not(
    store: SqliteStore,
) -> None:
    runner, server = await serve(Health(store))
    try:
        status, body = await ask(f"{server}/readyz")
        assert (status, body["ok"]) == (200, True), body
        held, release = threading.Event(), threading.Event()

        def hold_the_database_thread() -> None:
            held.set()
            release.wait(30)

        holding = asyncio.ensure_future(store.run(hold_the_database_thread))
        await asyncio.get_running_loop().run_in_executor(None, held.wait, 30)
        started = time.monotonic()
        status, body = await ask(f"{server}/readyz")
        assert status == 503 and "did not answer within 1s" in str(body["reason"]), body
        assert time.monotonic() - started < STORE_ANSWER_WITHIN + 2
        status, body = await ask(f"{server}/healthz")  # alive all the same: no restart
        assert status == 200
        release.set()
        await holding
        status, body = await ask(f"{server}/readyz")
        assert status == 200, body
    finally:
        await runner.cleanup()


async def test_a_message_nobody_works_on_makes_it_not_ready(store: SqliteStore) -> None:
    runner, server = await serve(Health(store, stuck_after=60))
    try:
        await store.inbox_add(message(1), lane="telegram:42")
        status, body = await ask(f"{server}/readyz")
        assert status == 200 and body["oldest_waiting_seconds"] < 60, body
        store.sync.db.execute("UPDATE inbox SET received_at = received_at - 120")
        status, body = await ask(f"{server}/readyz")
        assert status == 503 and "the inbox is stuck" in str(body["reason"]), body
        # a message queued behind a running turn in its lane is waiting, not stuck
        await store.inbox_claim("me", limit=1, lease_seconds=60, platforms=["telegram"])
        await store.inbox_add(message(2), lane="telegram:42")
        store.sync.db.execute("UPDATE inbox SET received_at = received_at - 120")
        status, body = await ask(f"{server}/readyz")
        assert status == 200, body
    finally:
        await runner.cleanup()


async def test_run_serves_health_on_its_health_port(tmp_path: Path) -> None:
    port = free_port()
    async with FakeTelegram() as tg:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": tg.base_url,
               "CHATBRUSH_DB": str(tmp_path / "chatbrush.db"),
               "CHATBRUSH_HEALTH_PORT": str(port)}
        log = tmp_path / "run.log"
        proc = await start_chatbrush(["run", "--demo"], tmp_path, env, log=log)
        try:
            await tg.wait_for(lambda: tg.calls_of("getUpdates"), what="polling")
            status, body = await ask(f"http://127.0.0.1:{port}/readyz")
            assert (status, body["ok"], body["store"]) == (200, True, "ok"), body
            assert (await ask(f"http://127.0.0.1:{port}/healthz"))[0] == 200
            # Telegram failing getUpdates twice running: the connection is down
            calls = len(tg.calls_of("getUpdates"))
            for _ in range(2):
                tg.fail_next("getUpdates", code=502, description="Bad Gateway")
            await tg.wait_for(lambda: len(tg.calls_of("getUpdates")) >= calls + 2,
                              what="two failed polls")
            status, body = await until_status(f"http://127.0.0.1:{port}/readyz", 503)
            assert "telegram: polling failed 2 times in a row" in str(body["reason"]), body
            alice = tg.user(1001, "Alice")  # an update ends the next long poll at once
            tg.send(tg.private_chat(alice), alice, "/help")
            status, body = await until_status(f"http://127.0.0.1:{port}/readyz", 200)
            assert status == 200, body
        finally:
            assert await stop(proc) == 0, log.read_text()[-3000:]


async def test_a_second_chatbrush_on_the_same_file_says_so_in_one_line(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": tg.base_url,
               "CHATBRUSH_DB": str(tmp_path / "chatbrush.db")}
        log = tmp_path / "first.log"
        first = await start_chatbrush(["run", "--demo"], tmp_path, env, log=log)
        try:
            await tg.wait_for(lambda: tg.calls_of("getUpdates"), what="the first bot polling")
            second = await asyncio.to_thread(run_chatbrush, ["run", "--demo"], "", tmp_path,
                                             env)
        finally:
            assert await stop(first) == 0, log.read_text()[-3000:]
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert lines == [f"chatbrush: another chatbrush process is using {tmp_path}/chatbrush.db; "
                     "run one process per SQLite file, or use PostgreSQL (DATABASE_URL) for "
                     "several"], second.stderr


def test_the_catalog_tool_leaves_the_files_alone_when_nothing_changed() -> None:
    files = [catalogs.TEMPLATE, *(catalogs.po_path(lang) for lang in catalogs.LANGUAGES[1:])]
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    subprocess.run([sys.executable, "-m", "bot.kit.i18n.catalogs"], cwd=REPO, check=True,
                   timeout=120)
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files} == before
