"""Slack's settings group: the ``SLACK_*`` variables, read from the environment and
``.env`` beside the core settings (see :class:`bot.core.platforms.PlatformSettings`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from bot.core.config import CommaList, http_url, split_commas
from bot.core.platforms import AllowList, PlatformSettings


class SlackSettings(PlatformSettings):
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_allowed_channels: CommaList = ()
    slack_connections: int = Field(
        32, ge=1, le=1024, description="keep-alive connections to the Slack Web API"
    )

    def configured(self) -> bool:
        """The bot token is set (without a way in, the adapter says what is missing)."""
        return self.slack_bot_token is not None

    def allow_list(self) -> AllowList:
        return AllowList(frozenset(self.slack_allowed_channels))

    @field_validator("slack_allowed_channels", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return http_url(value)
