"""`chatbrush web` and `chatbrush run` with Slack configured, as a deployment runs them.

The real CLI runs in a subprocess, finds the Slack adapter through its entry point, and
talks to the fake Slack and fake Gemini servers of this test over loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.fakes.gemini import FakeGemini
from tests.fakes.slack_api import FakeSlack, event_callback, message_event, sign
from tests.processes import start_chatbrush


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "purple").save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeSlack, FakeGemini]]:
    async with FakeSlack() as slack, FakeGemini() as gemini:
        yield slack, gemini


async def start(args: list[str], cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await start_chatbrush(args, cwd, env)


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, err.decode(errors="replace")


def base_env(slack: FakeSlack, gemini: FakeGemini, tmp: Path) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
        "GEMINI_API_KEY": str(gemini.api_key),
        "GEMINI_BASE_URL": gemini.base_url,
        "CHATBRUSH_DB": str(tmp / "chatbrush.db"),
    }


async def test_chatbrush_web_serves_slack_events_on_port(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    slack, gemini = servers
    port = free_port()
    env = base_env(slack, gemini, tmp_path) | {
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "PORT": str(port),
    }
    proc = await start(["web", "--host", "127.0.0.1"], tmp_path, env)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/slack/events"
            challenge = {"token": "t", "challenge": "abc123", "type": "url_verification"}
            body = json.dumps(challenge).encode()
            for _ in range(300):  # until the server listens (start-up, not a timing check)
                try:
                    async with http.post(
                        url, data=body, headers=sign(body, slack.signing_secret)
                    ) as r:
                        status, text = r.status, await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, "chatbrush web exited"
                    await asyncio.sleep(0.05)
            assert status == 200 and "abc123" in text

            file = slack.host_file(png(), "cat.png")
            event = message_event("<@UBOT> invert it", kind="app_mention", files=[file])
            body = json.dumps(event_callback(event)).encode()
            headers = {"Content-Type": "application/json", **sign(body, slack.signing_secret)}
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 200
            await slack.wait_for(lambda: bool(slack.shared_uploads("C111", event["ts"])), 30)
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert slack.bot_token not in err and slack.signing_secret not in err


async def test_chatbrush_run_connects_over_socket_mode(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    slack, gemini = servers
    env = base_env(slack, gemini, tmp_path) | {"SLACK_APP_TOKEN": slack.app_token}
    proc = await start(["run"], tmp_path, env)
    try:
        event = message_event("<@UBOT> draw a purple cat", kind="app_mention")
        ack = await asyncio.wait_for(slack.socket_send(event_callback(event)), 60)
        assert ack["envelope_id"]
        await slack.wait_for(lambda: bool(slack.shared_uploads("C111", event["ts"])), 30)
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert slack.app_token not in err and slack.bot_token not in err
