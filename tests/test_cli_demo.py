"""``chatbrush run --demo`` and ``chatbrush web --demo``: a real Telegram connection with the
offline demo model, so an operator can rehearse a deployment before having a model key.

The real CLI runs in a subprocess with no ``GEMINI_API_KEY`` at all, talks to the fake Bot
API through ``TELEGRAM_BASE_URL``, and the edited picture must arrive there.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app.cli import NO_KEY
from bot.models.demo import LABEL
from tests.fakes.gemini import make_png
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.processes import REPO, clean_environment, run_chatbrush, start_chatbrush
from tests.test_telegram_cli import final_answers, free_port, stop, wait_until_serving

pytestmark = pytest.mark.timeout(90)

SECRET = "rehearsal-secret-123"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def demo_env(tg: FakeTelegram, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A deployment's settings minus the model key (``clean_environment`` drops any)."""
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": tg.base_url,
        "CHATBRUSH_DB": str(tmp_path / "chatbrush.db"),
        **extra,
    }


def assert_demo_picture(answers: list[dict[str, object]]) -> None:
    pictures = [a for a in answers if "photo" in a or "document" in a]
    assert pictures, answers
    said = " ".join(str(a.get("caption") or a.get("text") or "") for a in answers)
    assert LABEL in said, said


async def test_web_demo_answers_a_webhook_update_without_a_key(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    env = demo_env(tg, tmp_path, PORT=str(port), TELEGRAM_WEBHOOK_SECRET=SECRET,
                   TELEGRAM_WEBHOOK_URL="https://bot.example.test/tg/hook")
    log = tmp_path / "web.log"
    proc = await start_chatbrush(["web", "--demo", "--host", "127.0.0.1"], tmp_path, env,
                                 log=log)
    try:
        await tg.wait_for(lambda: tg.webhook, what="setWebhook")
        await wait_until_serving(server)
        assert tg.webhook is not None and tg.webhook["secret_token"] == SECRET
        alice = tg.user(1001, "Alice")
        asked = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 48),
                        caption="blur it", push=False)
        assert await tg.post_to_webhook(tg.queue_update(asked), server) == 200
        answers = await tg.wait_for(lambda: final_answers(tg, asked), what="demo answer")
    finally:
        assert await stop(proc) == 0, log.read_text()[-3000:]
    assert_demo_picture(answers)
    assert NO_KEY not in log.read_text()


async def test_run_demo_long_polls_without_a_key(tg: FakeTelegram, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    proc = await start_chatbrush(["run", "--demo"], tmp_path, demo_env(tg, tmp_path), log=log)
    try:
        alice = tg.user(1001, "Alice")
        asked = tg.send(tg.private_chat(alice), alice, photo=make_png(64, 48),
                        caption="make it black and white")
        answers = await tg.wait_for(lambda: final_answers(tg, asked), what="demo answer")
    finally:
        assert await stop(proc) == 0, log.read_text()[-3000:]
    assert_demo_picture(answers)
    assert not tg.calls_of("setWebhook")


@pytest.mark.parametrize("command", ["run", "web"])
def test_without_demo_and_without_a_key_it_stops_with_one_line(
    command: str, tmp_path: Path
) -> None:
    done = run_chatbrush([command], "", tmp_path, {"TELEGRAM_BOT_TOKEN": TOKEN,
                                                   "CHATBRUSH_DB": str(tmp_path / "c.db")})
    assert done.returncode == 2
    assert done.stderr.strip() == NO_KEY


async def rehearse(service: str, env: dict[str, str], tmp_path: Path) -> Any:
    """``python -m tests.fakes SERVICE --port N``, a ``run --demo`` connected to it, and a
    user's picture sent through the fake's control API: the bot's answers to it."""
    port = free_port()
    fake = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes", service, "--port", str(port), cwd=REPO,
        env=clean_environment(), stdout=asyncio.subprocess.PIPE)
    assert fake.stdout is not None
    base_url = f"http://127.0.0.1:{port}"
    assert base_url in (await asyncio.wait_for(fake.stdout.readline(), 30)).decode()
    log = tmp_path / "run.log"
    env = {key: value.replace("{fake}", base_url) for key, value in env.items()}
    bot = await start_chatbrush(["run", "--demo"], tmp_path,
                                {**env, "CHATBRUSH_DB": str(tmp_path / "chatbrush.db")}, log=log)
    try:
        async with aiohttp.ClientSession(base_url) as http:
            async with http.post("/_fake/message",
                                 json={"photo": True, "caption": "rotate left"}) as posted:
                assert posted.status == 200, await posted.text()
                message = (await posted.json())["message"]
            key = message.get("message_id") or message.get("ts")
            async with http.get(f"/_fake/replies/{key}", params={"timeout": "60"}) as replies:
                assert replies.status == 200, await replies.text()
                return await replies.json()
    finally:
        assert await stop(bot) == 0, log.read_text()[-3000:]
        fake.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(fake.wait(), 30) == 0


async def test_rehearsal_with_the_fake_bot_api_as_a_local_service(tmp_path: Path) -> None:
    """As docs/operations.md shows an operator: a polling bot, a user played by curl."""
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": "{fake}"}
    assert_demo_picture(await rehearse("telegram", env, tmp_path))


async def test_rehearsal_with_the_fake_slack_as_a_local_service(tmp_path: Path) -> None:
    env = {"SLACK_API_URL": "{fake}/api/", "SLACK_BOT_TOKEN": FakeSlack().bot_token,
           "SLACK_APP_TOKEN": FakeSlack().app_token}  # Socket Mode
    [picture] = await rehearse("slack", env, tmp_path)
    assert picture["bytes"] > 0 and LABEL in picture["initial_comment"]
