"""`chatbrush run` with ``TELEGRAM_BOT_TOKEN`` set, as a deployment runs it.

The real CLI runs in a subprocess, finds the Telegram adapter through its entry point,
long-polls the fake Bot API of this test through ``TELEGRAM_BASE_URL`` and calls the fake
Gemini service; SIGTERM stops it cleanly, acknowledging what it fetched.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
