"""Settings from the environment and a ``.env`` file (pydantic-settings).

Variable names are those of DESIGN.md, without a prefix, because that is what deployment
guides and PaaS dashboards will show. A bad value becomes :class:`SettingsError`, a
one-line message naming the variable, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


class SettingsError(Exception):
    """A setting is missing or malformed; ``str()`` is the one line to show."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # --- the model
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_model: str = "gemini-2.5-flash-image"
    gemini_timeout: float = Field(120.0, gt=0, description="seconds for one HTTP attempt")
    gemini_retry_budget: float = Field(
        180.0, gt=0, description="seconds a call may spend across all retries"
    )
    gemini_max_attempts: int = Field(5, ge=1, le=20)
    gemini_aspect_ratio: str | None = None
    gemini_image_size: str | None = None

    # --- context policy and images
    chatbrush_context_bytes: int = Field(
        8_000_000, ge=100_000, description="byte budget of one request's inline data"
    )
    chatbrush_max_input_images: int | None = Field(None, ge=1, le=14)
    chatbrush_max_side: int = Field(1536, ge=64, le=8192)
    chatbrush_max_upload_bytes: int = Field(20_000_000, ge=1)
    chatbrush_max_pixels: int = Field(50_000_000, ge=1)
    chatbrush_max_prompt_chars: int = Field(4000, ge=1)

    # --- storage and people
    chatbrush_db: str = "chatbrush.db"
    chatbrush_admins: CommaList = ()

    # --- Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_base_url: str = "https://api.telegram.org"
    telegram_allowed_chats: CommaList = ()
    telegram_allowed_users: CommaList = ()
    telegram_album_debounce: float = Field(1.0, ge=0)

    # --- Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_allowed_channels: CommaList = ()

    # --- web and operations
    port: int = Field(8080, ge=0, le=65535)
    chatbrush_metrics_port: int | None = Field(None, ge=1, le=65535)

    # --- provenance (issue 11)
    chatbrush_c2pa: bool = Field(True, description="sign sent pictures with Content Credentials")
    chatbrush_c2pa_cert: Path | None = Field(None, description="PEM chain, signing cert first")
    chatbrush_c2pa_key: Path | None = Field(None, description="PEM private key of that cert")

    @field_validator("chatbrush_c2pa_cert", "chatbrush_c2pa_key", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: Any) -> Any:
        # `CHATBRUSH_C2PA_KEY=` in a .env means "not set", not the current directory
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "chatbrush_admins",
        "telegram_allowed_chats",
        "telegram_allowed_users",
        "slack_allowed_channels",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("gemini_base_url", "telegram_base_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("gemini_image_size")
    @classmethod
    def _image_size(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in {"1K", "2K", "4K"}:
            raise ValueError("must be 1K, 2K or 4K")
        return value.upper() if value else None

    def is_global_admin(self, platform: str, user_id: str) -> bool:
        return f"{platform}:{user_id}" in self.chatbrush_admins


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "settings"
        message = str(first.get("msg", "invalid value"))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SettingsError(f"invalid setting {name}: {message}{more}") from None
