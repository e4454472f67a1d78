"""Settings: DESIGN.md's variable names, .env files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import SettingsError, load_settings


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.gemini_model == "gemini-2.5-flash-image"
    assert s.gemini_base_url == "https://generativelanguage.googleapis.com"
    assert s.telegram_base_url == "https://api.telegram.org"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.chatbrush_db == "chatbrush.db"


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
