"""Settings: DESIGN.md's variable names, .env files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.slack.settings import SlackSettings
from adapters.telegram.settings import TelegramSettings
from bot.core.config import SettingsError, load_settings
from bot.core.platforms import configured_platforms


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.gemini_model == "gemini-2.5-flash-image"
    assert s.gemini_base_url == "https://generativelanguage.googleapis.com"
    assert TelegramSettings.of(s).telegram_base_url == "https://api.telegram.org"
    assert SlackSettings.of(s).slack_api_url == "https://slack.com/api/"
    assert s.chatbrush_db == "chatbrush.db"
    assert configured_platforms(s) == []  # nothing set: `chatbrush` opens the demo console


def test_platform_groups_read_the_same_environment_and_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=123:from-dotenv\n")
    monkeypatch.setenv("SLACK_ALLOWED_CHANNELS", "C1, C2")
    s = load_settings(telegram_album_debounce="0.25")  # given by name, as tests do
    telegram = TelegramSettings.of(s)
    assert telegram.telegram_bot_token is not None
    assert telegram.telegram_bot_token.get_secret_value() == "123:from-dotenv"
    assert telegram.album_debounce() == 0.25
    assert SlackSettings.of(s).allow_list().chats == {"C1", "C2"}
    assert [p.name for p in configured_platforms(s)] == ["telegram"]


def test_environment_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBRUSH_ADMINS", "telegram:123, slack:U01")
    monkeypatch.setenv("GEMINI_IMAGE_SIZE", "2k")
    s = load_settings()
    assert s.is_global_admin("slack", "U01") and not s.is_global_admin("slack", "123")
    assert s.gemini_image_size == "2K"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GEMINI_API_KEY=from-dotenv\nPORT=9000\n")
    s = load_settings()
    assert s.gemini_api_key is not None
    assert s.gemini_api_key.get_secret_value() == "from-dotenv"
    assert s.port == 9000
    assert "from-dotenv" not in repr(s)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "eighty"), ("GEMINI_BASE_URL", "ftp://x"), ("GEMINI_IMAGE_SIZE", "8K"),
     ("CHATBRUSH_MAX_SIDE", "-5")],
)
def test_bad_values_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"invalid setting {name}:")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("TELEGRAM_WEBHOOK_URL", "http://plain.example"), ("TELEGRAM_BASE_URL", "ftp://x"),
     ("TELEGRAM_WEBHOOK_SECRET", "has spaces"), ("SLACK_API_URL", "slack.com"),
     ("SLACK_CONNECTIONS", "0")],
)
def test_a_bad_platform_value_is_one_line_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        configured_platforms(load_settings())  # what `chatbrush` does before anything else
    message = str(err.value)
    assert message.startswith(f"invalid setting {name}:")
    assert "\n" not in message
