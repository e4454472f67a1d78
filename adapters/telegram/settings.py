"""Telegram's settings group: the ``TELEGRAM_*`` variables, read from the environment and
``.env`` beside the core settings (see :class:`bot.core.platforms.PlatformSettings`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, field_validator

from bot.core.config import CommaList, http_url, split_commas
from bot.core.platforms import AllowList, PlatformSettings


class TelegramSettings(PlatformSettings):
    telegram_bot_token: SecretStr | None = None
    telegram_base_url: str = "https://api.telegram.org"
    telegram_allowed_chats: CommaList = ()
    telegram_allowed_users: CommaList = ()
    telegram_album_debounce: float = Field(1.0, ge=0)
    telegram_webhook_url: str | None = None
    telegram_connections: int = Field(
        32, ge=1, le=1024, description="keep-alive connections to the Bot API"
    )
    telegram_webhook_secret: SecretStr | None = None

    def configured(self) -> bool:
        return bool(self.telegram_bot_token and self.telegram_bot_token.get_secret_value())

    def allow_list(self) -> AllowList:
        return AllowList(frozenset(self.telegram_allowed_chats),
                         frozenset(self.telegram_allowed_users))

    def album_debounce(self) -> float:
        return self.telegram_album_debounce

    @field_validator("telegram_allowed_chats", "telegram_allowed_users", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("telegram_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Telegram only calls HTTPS webhooks)")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}",
                                                  value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value
