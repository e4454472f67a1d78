"""Discord's settings group: the ``DISCORD_*`` variables, read from the environment and
``.env`` beside the core settings (see :class:`bot.core.platforms.PlatformSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr, field_validator

from bot.core.config import CommaList, http_url, split_commas
from bot.core.events import Incoming
from bot.core.platforms import AllowList, PlatformSettings


@dataclass(frozen=True)
class DiscordAllowList(AllowList):
    """Chats (channels), people, and whole servers: a server holds many channels, so an
    event is allowed when its server is listed (the adapter puts it in ``platform_data``)."""

    servers: frozenset[str] = frozenset()

    @property
    def open(self) -> bool:
        return super().open and not self.servers

    def allows(self, event: Incoming) -> bool:
        if self.servers and event.platform_data.get("guild") in self.servers:
            return True
        return super().allows(event)


class DiscordSettings(PlatformSettings):
    discord_bot_token: SecretStr | None = None
    #: the REST root including the version, like TELEGRAM_BASE_URL (a proxy, a test server)
    discord_api_base: str = "https://discord.com/api/v10"
    #: discord.py's plain client goes straight to this host; the REST base does not move it
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_allowed_servers: CommaList = ()
    discord_allowed_channels: CommaList = ()
    discord_allowed_users: CommaList = ()
    #: ask for the privileged message-content intent (only if the application has it:
    #: asking without it ends the connection with close code 4014)
    discord_message_content: bool = False
    #: where the adapter remembers, per channel, the newest message it stored (catch-up)
    discord_catch_up_file: str = "discord-catch-up.json"
    discord_catch_up_limit: int = Field(
        100, ge=1, le=1000, description="messages read per channel when catching up"
    )

    def configured(self) -> bool:
        return self.discord_bot_token is not None

    def allow_list(self) -> AllowList:
        return DiscordAllowList(chats=frozenset(self.discord_allowed_channels),
                                users=frozenset(self.discord_allowed_users),
                                servers=frozenset(self.discord_allowed_servers))

    @field_validator("discord_allowed_servers", "discord_allowed_channels",
                     "discord_allowed_users", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("discord_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("discord_gateway_url")
    @classmethod
    def _gateway(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("DISCORD_GATEWAY_URL must start with wss:// (or ws://)")
        return value
