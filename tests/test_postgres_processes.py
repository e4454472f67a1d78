"""Three `chatbrush web` processes on one PostgreSQL database, as behind a load balancer.

Telegram (the fake Bot API) posts a burst of 1,000 updates from 100 private chats to the
three webhooks at random, each chat's messages one after another as Telegram delivers
them; one process is killed with ``kill -9`` in the middle. The other two take over what
it held once its leases run out. Every message must be answered, once, in the order its
chat sent them, and no message may cause two model calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from bot.core.messages import QUEUED_NOTICE
from tests.fakes.gemini import FakeGemini
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.postgres_server import shared_server
from tests.processes import start_chatbrush
from tests.test_telegram_cli import accepted_at, free_port, stop, wait_until_serving

pytestmark = pytest.mark.timeout(120)

CHATS = 100
MESSAGES_PER_CHAT = 10
PROCESSES = 3
#: long enough that a live process, however loaded the machine, renews in time
LEASE_SECONDS = 10
#: how long before the kill an answer may have been accepted and still go out twice
WINDOW_SECONDS = 1.0
TAG = re.compile(r"#\d+\.\d+")


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeTelegram, FakeGemini]]:
    async with FakeTelegram() as tg, FakeGemini() as gemini:
        yield tg, gemini


class Answers:
    """The bot's answers (not its "you're next" notes) by the message they reply to, read
    from the fake's record as it grows: the burst is checked after every API call, so
    this must not rescan everything each time."""

    def __init__(self, tg: FakeTelegram) -> None:
        self.tg = tg
        self.read = 0
        self.by_message: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)

    def of(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.count()
        return self.by_message.get((message["chat"]["id"], message["message_id"]), [])

    def count(self) -> int:
        """How many messages have at least one answer."""
        for sent in self.tg.sent[self.read:]:
            asked = sent.get("reply_to_message")
            if asked is not None and QUEUED_NOTICE not in sent.get("text", ""):
                self.by_message[(sent["chat"]["id"], asked["message_id"])].append(sent)
        self.read = len(self.tg.sent)
        return len(self.by_message)


async def post_somewhere(http: aiohttp.ClientSession, tg: FakeTelegram,
                         update: dict[str, Any], servers: list[str], alive: list[bool]
                         ) -> None:
    """Deliver one update as Telegram does through a load balancer: a JSON POST with the
    registered secret to any process, and again to another until one answers 200 (a
    dead process refuses the connection)."""
    assert tg.webhook is not None
    path = urlsplit(tg.webhook["url"]).path
    headers = {"X-Telegram-Bot-Api-Secret-Token": tg.webhook["secret_token"]}
    for _ in range(200):
        server = random.choice([s for s, up in zip(servers, alive, strict=True) if up])
        try:
            async with http.post(server + path, json=update, headers=headers) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"update {update['update_id']} was never accepted")


@pytest.mark.slow
async def test_three_processes_one_database_survive_a_kill_9_mid_burst(
    servers: tuple[FakeTelegram, FakeGemini], tmp_path: Path
) -> None:
    tg, gemini = servers
    gemini.enqueue(delay=0.05, times=10_000)  # every answer takes a moment, like a model
    database_url = shared_server().fresh_database(migrated=False)  # they race to migrate
    ports = [free_port() for _ in range(PROCESSES)]
    addresses = [f"http://127.0.0.1:{port}" for port in ports]
    logs = [tmp_path / f"web{n}.log" for n in range(PROCESSES)]
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": tg.base_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/tg/hook",
        "GEMINI_API_KEY": str(gemini.api_key),
        "GEMINI_BASE_URL": gemini.base_url,
        "DATABASE_URL": database_url,
        "CHATBRUSH_DB_POOL_SIZE": "8",
        "CHATBRUSH_LEASE_SECONDS": str(LEASE_SECONDS),
        "CHATBRUSH_C2PA": "false",
    }
    procs = [await start_chatbrush(["web", "--host", "127.0.0.1", "--port", str(port)],
                                   tmp_path, env, log=log)
             for port, log in zip(ports, logs, strict=True)]
    alive = [True] * PROCESSES
    answers = Answers(tg)
    stack = contextlib.AsyncExitStack()
    try:
        for address in addresses:
            await wait_until_serving(address)
        people = [tg.user(5000 + n, f"user{n}") for n in range(CHATS)]
        sent: list[list[dict[str, Any]]] = [[] for _ in range(CHATS)]

        async def chat(n: int, http: aiohttp.ClientSession) -> None:
            person = people[n]
            for k in range(MESSAGES_PER_CHAT):
                message = tg.send(tg.private_chat(person), person,
                                  f"draw a lighthouse, then change it #{n}.{k}", push=False)
                sent[n].append(message)
                await post_somewhere(http, tg, tg.queue_update(message), addresses, alive)

        http = await stack.enter_async_context(aiohttp.ClientSession())
        burst = asyncio.gather(*(chat(n, http) for n in range(CHATS)))
        everything = CHATS * MESSAGES_PER_CHAT
        await tg.wait_for(lambda: answers.count() >= everything // 4, timeout_s=60,
                          what="a quarter answered")
        victim = 1
        alive[victim] = False
        assert await stop(procs[victim], signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.monotonic()
        await burst
        await tg.wait_for(lambda: answers.count() == everything, timeout_s=60,
                          what="every message answered")
    finally:
        await stack.aclose()
        for n, proc in enumerate(procs):
            if alive[n]:
                assert await stop(proc) == 0, logs[n].read_text()[-3000:]

    messages = [m for chat_messages in sent for m in chat_messages]
    # Exactly once, except where the kill landed between Telegram accepting an answer and
    # the killed process recording that (README, "Reliability"): sent again, never lost.
    # That moment includes waiting for a pooled connection on a busy machine.
    twice = [m for m in messages if len(answers.of(m)) > 1]
    assert all(len(answers.of(m)) == 2 for m in twice)
    before_kill = [killed_at - accepted_at(tg, answers.of(m)[0]) for m in twice]
    # (what it had on the wire as it died may be read a moment after)
    assert all(abs(seconds) < WINDOW_SECONDS for seconds in before_kill), before_kill
    # Each chat's answers in the order its messages were sent.
    for chat_messages in sent:
        first_answers = [answers.of(m)[0]["message_id"] for m in chat_messages]
        assert first_answers == sorted(first_answers)
    # No message caused two model calls; the only ones without a picture are those whose
    # call the kill cut short (one per conversation at most: a lane runs one at a time).
    calls = Counter(m.group(0) for r in gemini.requests if (m := TAG.search(r.prompt)))
    assert max(calls.values()) == 1, "a message caused two model calls"
    interrupted = [m for m in messages
                   if "restarted while the model" in answers.of(m)[0].get("text", "")]
    assert len(interrupted) <= CHATS
    without_picture = [m for m in messages if "photo" not in answers.of(m)[0]]
    assert without_picture == interrupted
    with psycopg.connect(database_url) as db:
        left = db.execute("SELECT count(*) FROM inbox WHERE status IN"
                          " ('received', 'processing')").fetchone()
        versions = db.execute("SELECT count(*), count(DISTINCT (thread_id, version))"
                              " FROM turns WHERE role = 'model'").fetchone()
        taken_over = db.execute("SELECT count(*) FROM inbox WHERE attempts > 1").fetchone()
    assert left == (0,)
    assert taken_over is not None and taken_over[0] > 0  # the dead process's claims moved on
    assert versions is not None and versions[0] == versions[1]  # no version number twice
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert shared_server().password not in text
