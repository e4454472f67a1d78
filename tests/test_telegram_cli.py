"""`chatbrush run` with ``TELEGRAM_BOT_TOKEN`` set, as a deployment runs it.

The real CLI runs in a subprocess, finds the Telegram adapter through its entry point,
long-polls the fake Bot API of this test through ``TELEGRAM_BASE_URL`` and calls the fake
Gemini service; SIGTERM stops it cleanly, acknowledging what it fetched.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core.messages import QUEUED_NOTICE
from tests.fakes.gemini import FakeGemini, make_png
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.processes import start_chatbrush

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeTelegram, FakeGemini]]:
    async with FakeTelegram() as tg, FakeGemini() as gemini:
        yield tg, gemini


async def start(cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await start_chatbrush(["run"], cwd, env)


@pytest.mark.slow
async def test_chatbrush_run_long_polls_telegram(
    servers: tuple[FakeTelegram, FakeGemini], tmp_path: Path
) -> None:
    tg, gemini = servers
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": tg.base_url,
        "GEMINI_API_KEY": str(gemini.api_key),
        "GEMINI_BASE_URL": gemini.base_url,
        "CHATBRUSH_DB": str(tmp_path / "chatbrush.db"),
    }
    proc = await start(tmp_path, env)
    try:
        alice = tg.user(1001, "Alice")
        asked = tg.send(tg.private_chat(alice), alice, photo=make_png(96, 64), caption="blur it")
        [answer] = await tg.wait_sent(1, timeout_s=60)
        await tg.wait_polled_past(asked)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    err = err_bytes.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "photo" in answer and answer["reply_to_message"]["message_id"] == asked["message_id"]
    assert tg.calls_of("setMyCommands") and tg.calls_of("deleteWebhook")
    # stopped cleanly: the last poll acknowledged everything it had fetched
    assert tg.pending_updates == 0
    assert TOKEN.split(":", 1)[1] not in err


# ---------------------------------------------------------------------- durability
def bot_env(tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": tg.base_url,
        "GEMINI_API_KEY": str(gemini.api_key),
        "GEMINI_BASE_URL": gemini.base_url,
        "CHATBRUSH_DB": str(tmp_path / "chatbrush.db"),
        "TELEGRAM_ALBUM_DEBOUNCE": "0.1",
        **extra,
    }


def final_answers(tg: FakeTelegram, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's answers to ``message``: pictures and texts, not the "you're next" note."""
    return [
        m for m in tg.sent_to(message["chat"]["id"])
        if m.get("reply_to_message", {}).get("message_id") == message["message_id"]
        and QUEUED_NOTICE not in m.get("text", "")
    ]


def accepted_at(tg: FakeTelegram, answer: dict[str, Any]) -> float:
    return tg.sent_at[(answer["chat"]["id"], answer["message_id"])]


def tag_of(message: dict[str, Any]) -> str:
    return "#" + str(message.get("caption") or message.get("text") or "").split("#")[-1]


def model_calls_per_message(gemini: FakeGemini) -> Counter[str]:
    """Model calls by the ``#id`` tag each test message carries in its prompt."""
    return Counter(m.group(0) for r in gemini.requests if (m := re.search(r"#\d+", r.prompt)))


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 60)


@pytest.mark.slow
async def test_kill_9_mid_burst_loses_nothing_and_pays_for_nothing_twice(
    servers: tuple[FakeTelegram, FakeGemini], tmp_path: Path
) -> None:
    tg, gemini = servers
    gemini.enqueue(delay=0.15, times=10_000)  # every answer takes a moment, like a model
    env = bot_env(tg, gemini, tmp_path)
    log = tmp_path / "bot.log"
    chats = [tg.user(2000 + n, f"user{n}") for n in range(20)]
    sent: list[dict[str, Any]] = []
    for round_ in range(5):  # a burst: 20 chats, 5 messages each, in order per chat
        for n, person in enumerate(chats):
            tag = f"#{round_ * 100 + n}"
            chat = tg.private_chat(person)
            if round_ == 0:
                sent.append(tg.send(chat, person, photo=make_png(48, 48, seed=n),
                                    caption=f"make it red {tag}"))
            else:
                sent.append(tg.send(chat, person, f"now blur it {tag}"))
    proc = await start_chatbrush(["run"], tmp_path, env, log=log)
    await tg.wait_for(lambda: sum(bool(final_answers(tg, m)) for m in sent) >= len(sent) // 3,
                      timeout_s=60, what="a third answered")
    killed_at = time.monotonic()
    assert await stop(proc, signal.SIGKILL) == -signal.SIGKILL
    confirmed_at_kill = [m for m in sent if tg.confirmed(tg.delivered_update(m))]
    assert len(confirmed_at_kill) > len(sent) // 3  # Telegram forgot these: we must not

    again = await start_chatbrush(["run"], tmp_path, env, log=log)
    try:
        await tg.wait_for(lambda: all(final_answers(tg, m) for m in sent), timeout_s=60,
                          what="every message answered")
        await tg.wait_polled_past(sent[-1])
    finally:
        assert await stop(again) == 0, log.read_text()[-3000:]
    # Exactly once, except where the kill landed between Telegram accepting an answer and
    # the bot recording that: no platform API can tell a restarted bot whether that send
    # arrived, so it is sent again (at least once, never lost). Only answers the killed
    # process sent in its last moment may appear twice.
    twice = [m for m in sent if len(final_answers(tg, m)) > 1]
    assert all(len(final_answers(tg, m)) == 2 for m in twice)
    assert all(killed_at - accepted_at(tg, final_answers(tg, m)[0]) < 0.25 for m in twice)
    assert len(twice) <= len(chats)
    calls = model_calls_per_message(gemini)
    assert max(calls.values()) == 1, "no message caused two model calls"
    interrupted = {tag_of(m) for m in sent
                   if "restarted while the model" in final_answers(tg, m)[0].get("text", "")}
    # the only messages without a picture are those whose call the kill cut short (at most
    # one per chat), and a message's call was made at most once
    assert len(interrupted) <= len(chats)
    assert {tag_of(m) for m in sent} - set(calls) <= interrupted
    with sqlite3.connect(tmp_path / "chatbrush.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
async def test_sigterm_with_a_backlog_finishes_what_runs_and_keeps_the_rest(
    servers: tuple[FakeTelegram, FakeGemini], tmp_path: Path
) -> None:
    tg, gemini = servers
    gemini.enqueue(delay=0.3, times=1000)
    env = bot_env(tg, gemini, tmp_path, CHATBRUSH_SHUTDOWN_GRACE="20")
    log = tmp_path / "bot.log"
    alice = tg.user(1001, "Alice")
    chat = tg.private_chat(alice)
    sent = [tg.send(chat, alice, photo=make_png(48, 48), caption="make it red #0")]
    sent += [tg.send(chat, alice, f"and more #{n}") for n in range(1, 8)]
    proc = await start_chatbrush(["run"], tmp_path, env, log=log)
    await tg.wait_for(lambda: final_answers(tg, sent[0]), timeout_s=60, what="first answer")
    assert await stop(proc) == 0
    stopped_log = log.read_text()
    assert "Traceback" not in stopped_log and "closed database" not in stopped_log
    answered_before = sum(bool(final_answers(tg, m)) for m in sent)
    assert answered_before < len(sent), "a backlog was left for the next start"

    again = await start_chatbrush(["run"], tmp_path, env, log=log)
    try:
        await tg.wait_for(lambda: all(final_answers(tg, m) for m in sent), timeout_s=60,
                          what="the backlog answered")
    finally:
        assert await stop(again) == 0
    for message in sent:
        [answer] = final_answers(tg, message)
        assert "photo" in answer  # nothing was cut short: the grace let the turn finish
    assert [r.prompt.split("#")[-1] for r in gemini.requests] == [str(n) for n in range(8)]
    assert "Traceback" not in log.read_text()


# ---------------------------------------------------------------------- webhook
@pytest.mark.slow
async def test_webhook_mode_in_chatbrush_web(
    servers: tuple[FakeTelegram, FakeGemini], tmp_path: Path
) -> None:
    tg, gemini = servers
    port = free_port()
    env = bot_env(tg, gemini, tmp_path, PORT=str(port),
                  TELEGRAM_WEBHOOK_URL="https://bot.example.test/tg/hook")
    log = tmp_path / "web.log"
    server = f"http://127.0.0.1:{port}"
    proc = await start_chatbrush(["web", "--host", "127.0.0.1"], tmp_path, env, log=log)
    try:
        await tg.wait_for(lambda: tg.webhook, what="setWebhook")
        await wait_until_serving(server)
        assert tg.webhook is not None and tg.webhook["url"].endswith("/tg/hook")
        secret = tg.webhook["secret_token"]
        assert secret and TOKEN not in secret
        alice = tg.user(1001, "Alice")
        chat = tg.private_chat(alice)
        first = tg.send(chat, alice, photo=make_png(48, 48), caption="make it red #1",
                        push=False)
        update = tg.queue_update(first)
        assert await tg.post_to_webhook(update, server, secret="wrong") == 403
        assert await tg.post_to_webhook(update, server, secret="") == 403
        assert await tg.post_to_webhook(update, server) == 200
        assert await tg.post_to_webhook(update, server) == 200  # delivered twice
        await tg.wait_for(lambda: final_answers(tg, first), what="answer")

        # stored before the 200: a kill right after it loses nothing
        gemini.pause()
        second = tg.send(chat, alice, "now blur it #2", push=False)
        assert await tg.post_to_webhook(tg.queue_update(second), server) == 200
        assert await stop(proc, signal.SIGKILL) == -signal.SIGKILL
        gemini.resume()
        proc = await start_chatbrush(["web", "--host", "127.0.0.1"], tmp_path, env, log=log)
        await tg.wait_for(lambda: final_answers(tg, second), timeout_s=60, what="resumed")
    finally:
        assert await stop(proc) == 0, log.read_text()[-3000:]
    assert model_calls_per_message(gemini)["#1"] == 1
    assert not tg.calls_of("getUpdates")  # webhook mode never polls
    assert [len(final_answers(tg, m)) for m in (first, second)] == [1, 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_serving(server: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{server}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing serves {server}")
