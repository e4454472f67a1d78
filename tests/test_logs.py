"""Secrets never reach the logs, whichever library logs them."""

from __future__ import annotations

import logging

import pytest

from bot.core.config import load_settings
from bot.core.platforms import configured_platforms
from bot.kit.logs import MASK, secret_values, setup_logging


def test_tokens_in_urls_and_tracebacks_are_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "123456:AAbbCCddEEffGG"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSecretKey123")
    settings = load_settings()
    configured_platforms(settings)  # as `chatbrush` does first: every platform's group read
    setup_logging(secret_values(settings, *settings.groups_read()))
    logging.getLogger("telegram.ext").warning("POST https://api.telegram.org/bot%s/getMe", token)
    try:
        raise RuntimeError("key AIzaSecretKey123 rejected")
    except RuntimeError:
        logging.getLogger("x").exception("call failed")
    err = capsys.readouterr().err
    assert token not in err and "AIzaSecretKey123" not in err
    assert err.count(MASK) >= 2
    logging.getLogger().handlers.clear()
