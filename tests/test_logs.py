"""Secrets never reach the logs, whichever library logs them, in whatever case, at DEBUG."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from adapters.telegram.adapter import TelegramAdapter, webhook_secret
from bot.app.runtime import open_runtime
from bot.core.config import Settings, load_settings
from bot.core.events import Attachment, AttachmentKind, InputRefused
from bot.core.platforms import configured_platforms
from bot.kit.logs import MASK, RedactSecrets, secret_values, setup_logging
from tests.fakes.gemini import FakeGemini, make_png
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.processes import start_chatbrush

GOOGLE_KEY = "AIzaSyA1b2C3d4E5f6G7h8I9j0KkLlMmNnOoPpQ"
DB_PASSWORD = "Pg-Pa55word-Zq9"


def assert_clean(output: str, *secrets: str) -> None:
    """No secret in ``output`` in any case (PTB lower-cases some error texts)."""
    lowered = output.lower()
    for secret in secrets:
        assert secret.lower() not in lowered, f"{secret[:4]}… leaked"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore",
                                                                "aiohttp.access")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    sys.excepthook = sys.__excepthook__
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def debug_logging(settings: Settings) -> None:
    """As ``chatbrush run`` sets up its logs, with ``CHATBRUSH_LOG_LEVEL=debug``."""
    configured_platforms(settings)  # as `chatbrush` does first: every platform's group read
    setup_logging(secret_values(settings, *settings.groups_read()),
                  level=settings.log_level(logging.INFO))


def test_tokens_in_urls_and_tracebacks_are_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    token = "123456:AAbbCCddEEffGG"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSecretKey123")
    settings = load_settings()
    configured_platforms(settings)
    setup_logging(secret_values(settings, *settings.groups_read()))
    logging.getLogger("telegram.ext").warning("POST https://api.telegram.org/bot%s/getMe", token)
    try:
        raise RuntimeError("key AIZASECRETKEY123 rejected")  # the case a service echoed
    except RuntimeError:
        logging.getLogger("x").exception("call failed")
    err = capsys.readouterr().err
    assert_clean(err, token, "AIzaSecretKey123")
    assert err.count(MASK) >= 2


def test_warnings_and_uncaught_errors_go_through_the_scrubber_too(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_logging([GOOGLE_KEY])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logging.captureWarnings(False)  # in the block: pytest records warnings itself
            logging.captureWarnings(True)
            warnings.warn(f"retrying https://x.test/v1?key={GOOGLE_KEY}", UserWarning,
                          stacklevel=1)
        try:
            raise ValueError(f"bad key {GOOGLE_KEY.upper()}")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert "retrying" in err and "stopped by an error nothing caught" in err
    assert_clean(err, GOOGLE_KEY)


def test_the_log_level_is_a_documented_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBRUSH_LOG_LEVEL", " debug ")
    assert load_settings().log_level(logging.INFO) == logging.DEBUG
    monkeypatch.delenv("CHATBRUSH_LOG_LEVEL")
    assert load_settings().log_level(logging.WARNING) == logging.WARNING


@pytest.mark.parametrize("line", [
    "GET https://scott:{p}@db.example:5432/x",  # a password in a URL, configured or not
    "GET https://generativelanguage.googleapis.com/v1/models?alt=sse&key={p}",
    "headers {{'x-goog-api-key': '{p}', 'Authorization': 'Bearer {p}'}}",
    "setWebhook with {{'url': 'https://x', 'secret_token': '{p}'}}",
    "headers: X-Telegram-Bot-Api-Secret-Token: {p}",
    "token xoxb-{p} and xapp-1-{p} and sk-or-v1-{p}{p}",
])
def test_credentials_no_setting_names_are_masked_by_their_shape(line: str) -> None:
    unknown = "Unl1sted-Cred3ntial-9x"
    record = logging.LogRecord("lib", logging.DEBUG, __file__, 1, line.format(p=unknown),
                               None, None)
    RedactSecrets([]).filter(record)
    assert unknown not in record.getMessage() and MASK in record.getMessage()


def test_ordinary_numbers_and_words_are_left_alone() -> None:
    line = "usage prompt_token_count=1290 tokens: 12 at https://example.com/a?page=2"
    record = logging.LogRecord("lib", logging.INFO, __file__, 1, line, None, None)
    RedactSecrets(["Gemini-Key-123"]).filter(record)
    assert record.getMessage() == line


# ---------------------------------------------------------------------- the libraries
@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def test_python_telegram_bot_at_debug_leaks_neither_token_nor_webhook_secret(
    tg: FakeTelegram, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    settings = Settings(telegram_bot_token=TOKEN, telegram_base_url=tg.base_url,
                        telegram_webhook_url="https://bot.example/telegram",
                        gemini_api_key=GOOGLE_KEY, chatbrush_db=str(tmp_path / "c.db"),
                        chatbrush_log_level="DEBUG")
    debug_logging(settings)
    # the service echoes the URL, and PTB turns "Bad Request: …" into lower case
    tg.fail_next("getFile", code=400, description=(
        f"Bad Request: wrong file path {tg.base_url}/file/bot{TOKEN}/photos/1.jpg"))
    async with open_runtime(settings) as runtime:
        adapter = TelegramAdapter(settings, runtime.intake)
        await adapter.start(webhook=True)  # setWebhook with the secret derived from the token
        try:
            with pytest.raises(InputRefused):
                await adapter.fetch(Attachment(AttachmentKind.IMAGE, ref="AgAD-photo"))
        finally:
            await adapter.stop_receiving()
            await adapter.close()
    # the derived secret is masked wherever it shows up, not only beside its name
    logging.getLogger("aiohttp.server").debug("header %s", webhook_secret(TOKEN).upper())
    err = capsys.readouterr().err
    assert tg.webhook and tg.webhook["secret_token"] == webhook_secret(TOKEN)
    assert "setWebhook" in err and "download failed: wrong file path" in err.lower()
    assert_clean(err, TOKEN, webhook_secret(TOKEN), GOOGLE_KEY)


async def test_httpx_and_aiohttp_at_debug_mask_passwords_and_keys_in_urls_and_errors(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    settings = Settings(gemini_api_key=GOOGLE_KEY, chatbrush_log_level="DEBUG",
                        database_url=f"postgresql://bot:{DB_PASSWORD}@db.example:5432/bot")
    debug_logging(settings)
    app = web.Application()  # aiohttp's access log names every path and query it serves
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://bot:{DB_PASSWORD}@127.0.0.1:{port}/v1/models?key={GOOGLE_KEY.lower()}"
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 404
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            try:
                answer.raise_for_status()
            except aiohttp.ClientResponseError:
                logging.getLogger("chatbrush").exception("fetch failed")
    finally:
        await runner.cleanup()
    err = capsys.readouterr().err
    assert "httpx" in err and "aiohttp.access" in err and "ClientResponseError" in err
    assert_clean(err, GOOGLE_KEY, DB_PASSWORD)


async def test_slack_sdk_at_debug_masks_tokens_in_requests_and_bodies(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    async with FakeSlack() as slack:
        settings = Settings(slack_bot_token=slack.bot_token, slack_app_token=slack.app_token,
                            slack_signing_secret=slack.signing_secret,
                            chatbrush_log_level="DEBUG")
        debug_logging(settings)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        await client.auth_test()
        await client.api_call("chat.postMessage", params={"token": slack.bot_token},
                              json={"channel": "C1", "text": f"{slack.signing_secret.upper()} "
                                                             f"{slack.app_token}"})
    err = capsys.readouterr().err
    assert "slack_sdk" in err and "Sending a request" in err
    assert_clean(err, slack.bot_token, slack.app_token, slack.signing_secret)


# ---------------------------------------------------------------------- the real process
async def test_chatbrush_web_at_debug_logs_no_secret(tg: FakeTelegram, tmp_path: Path) -> None:
    """``chatbrush web`` as an operator runs it with ``CHATBRUSH_LOG_LEVEL=DEBUG``: the
    webhook is set with the derived secret, a user's photo cannot be fetched and the Bot API
    error echoes the URL with the token; the log names none of them, in any case."""
    async with FakeGemini() as gemini:
        port = free_port()
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": tg.base_url,
               "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/tg/hook",
               "GEMINI_API_KEY": GOOGLE_KEY, "GEMINI_BASE_URL": gemini.base_url,
               "CHATBRUSH_DB": str(tmp_path / "chatbrush.db"), "PORT": str(port),
               "CHATBRUSH_LOG_LEVEL": "debug"}
        log = tmp_path / "web.log"
        proc = await start_chatbrush(["web", "--host", "127.0.0.1"], tmp_path, env, log=log)
        try:
            await tg.wait_for(lambda: tg.webhook, what="setWebhook")
            tg.fail_next("getFile", code=400, description=(
                f"Bad Request: wrong file path {tg.base_url}/file/bot{TOKEN}/photos/1.jpg"))
            alice = tg.user(1001, "Alice")
            sent = tg.send(tg.private_chat(alice), alice, photo=make_png(48, 48),
                           caption="make it red", push=False)
            update = tg.queue_update(sent)
            for _ in range(600):  # the web server may still be starting
                try:
                    if await tg.post_to_webhook(update, f"http://127.0.0.1:{port}") == 200:
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            await tg.wait_for(lambda: [m for m in tg.sent_to(sent["chat"]["id"])
                                       if "couldn't download" in m.get("text", "")],
                              what="the refusal")
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    output = log.read_text()
    assert " DEBUG telegram" in output and "setWebhook" in output
    assert "download failed: wrong file path" in output.lower()
    assert_clean(output, TOKEN, webhook_secret(TOKEN), GOOGLE_KEY)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
