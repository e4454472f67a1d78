"""Settings from the environment and a ``.env`` file (pydantic-settings).

Variable names are the ones the services' own guides use (``GEMINI_API_KEY``,
``DATABASE_URL``, ``PORT``) where there is one, and ``CHATBRUSH_*`` for the bot's own,
because that is what deployment guides and PaaS dashboards will show. A bad value becomes
:class:`SettingsError`, a one-line message naming the variable, never a traceback.

:class:`Settings` holds the core's settings only. Each platform's settings are a group of
their own, defined in its adapter package and read from the same environment and ``.env``
(:meth:`Settings.group`, :class:`bot.core.platforms.PlatformSettings`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]

#: how every settings group is read: the environment and ``.env``, names without prefix
#: safe defaults against floods (issue 18): a person starts at most this many model
#: calls a minute and has at most this many under way; a chat at most this many
DEFAULT_USER_PER_MINUTE = 10
DEFAULT_CALLS_PER_PERSON = 2
DEFAULT_CALLS_PER_CHAT = 4

SETTINGS_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    case_sensitive=False,
    frozen=True,
)

Group = TypeVar("Group", bound=BaseSettings)


class SettingsError(Exception):
    """A setting is missing or malformed; ``str()`` is the one line to show."""


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` → ``("a", "b", "c")``: the form of every list setting."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


class Settings(BaseSettings):
    model_config = SETTINGS_CONFIG

    #: everything given by name (tests, benchmarks), which the platform groups read too
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)
    _groups: dict[type[BaseSettings], BaseSettings] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._given = dict(values)

    def group(self, cls: type[Group]) -> Group:
        """The settings group ``cls`` (a platform's), read from the same environment and
        ``.env``, with the values this one was given by name; read once, then kept. A bad
        value raises :class:`SettingsError`, one line naming the variable."""
        found = self._groups.get(cls)
        if found is None:
            found = self._groups[cls] = read_settings(cls, **self._given)
        return cast(Group, found)

    def groups_read(self) -> list[BaseSettings]:
        """The groups read so far (``chatbrush`` reads every platform's at start-up)."""
        return list(self._groups.values())

    # --- the model
    gemini_api_key: SecretStr | None = None
    #: more keys to spread calls across (``k1,k2,…``); with GEMINI_API_KEY, the union
    gemini_api_keys: tuple[SecretStr, ...] = ()
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
    chatbrush_context_turns: int = Field(
        40, ge=2, le=1000, description="the newest turns of a thread a request may carry"
    )
    chatbrush_max_input_images: int | None = Field(None, ge=1, le=14)
    chatbrush_max_side: int = Field(1536, ge=64, le=8192)
    chatbrush_max_upload_bytes: int = Field(20_000_000, ge=1)
    chatbrush_max_pixels: int = Field(50_000_000, ge=1)
    chatbrush_max_prompt_chars: int = Field(4000, ge=1)

    # --- storage and people
    chatbrush_db: str = "chatbrush.db"
    #: PostgreSQL (``postgresql://user:password@host:5432/dbname``); wins over CHATBRUSH_DB
    database_url: SecretStr | None = None
    chatbrush_db_pool_size: int = Field(
        10, ge=1, le=1000, description="PostgreSQL connections one process may open (+1)"
    )
    chatbrush_admins: CommaList = ()

    # --- intake and delivery
    chatbrush_concurrent_turns: int = Field(
        512, ge=1, le=10_000, description="turns one process runs at once"
    )
    chatbrush_shutdown_grace: float = Field(
        25.0, ge=0, description="seconds running turns get to finish on SIGTERM"
    )
    chatbrush_lease_seconds: float = Field(
        60.0, ge=2, le=3600, description="how long a claimed message stays with a process "
        "that stopped renewing it (one that died) before another takes it over"
    )
    chatbrush_delivery_attempts: int = Field(3, ge=1, le=10)
    chatbrush_delivery_backoff: float = Field(
        2.0, ge=0, description="first wait before re-sending an answer (doubles each time)"
    )

    # --- web and operations
    port: int = Field(8080, ge=0, le=65535)
    chatbrush_metrics_port: int | None = Field(None, ge=1, le=65535)
    chatbrush_metrics_host: str = Field(
        "127.0.0.1", min_length=1,
        description="address the metrics port binds (0.0.0.0 exposes it to the network)",
    )
    chatbrush_metrics_token: SecretStr | None = Field(
        None, description="when set, /metrics asks for `Authorization: Bearer <token>`"
    )
    chatbrush_metrics_on_web_port: bool = Field(
        False, description="also serve /metrics on the public webhook port of `chatbrush web`"
    )
    chatbrush_max_request_bytes: int = Field(
        1024 * 1024, ge=4096, le=32 * 1024 * 1024,
        description="largest webhook request body; larger ones get 413 before being read",
    )
    #: how much is logged (secrets are masked at every level); unset: each command's own
    chatbrush_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None

    def log_level(self, default: int) -> int:
        """``CHATBRUSH_LOG_LEVEL`` as a :mod:`logging` level, or ``default`` (the command's:
        the console keeps the terminal quiet) when it is not set."""
        level = self.chatbrush_log_level
        return default if level is None else logging.getLevelNamesMapping()[level]
    chatbrush_health_port: int | None = Field(
        None, ge=0, le=65535, description="with `chatbrush run`: /healthz and /readyz here"
    )
    chatbrush_health_host: str = "127.0.0.1"
    chatbrush_ready_inbox_age: float = Field(
        300.0, gt=0, description="/readyz fails once a message nobody works on is this old"
    )

    # --- providers (issue 10)
    chatbrush_provider: Literal["gemini", "openai"] = "gemini"
    #: the model list operators allow; entries "gemini-…" or "openai:<model id>"
    chatbrush_models: CommaList = ()
    gemini_auth_header: Literal["x-goog-api-key", "authorization", "bearer"] = "x-goog-api-key"
    openai_base_url: str = "https://openrouter.ai/api/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "google/gemini-2.5-flash-image"
    openai_max_image_bytes: int = Field(
        30_000_000, ge=1000, description="largest picture accepted from an answer"
    )
    openai_image_fetch_timeout: float = Field(
        30.0, gt=0, description="seconds to download a picture the answer links to"
    )
    openai_allow_private_image_hosts: CommaList = ()

    @field_validator("chatbrush_models", "openai_allow_private_image_hosts", "chatbrush_admins",
                     mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("gemini_api_keys", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return split_commas(value)

    def gemini_keys(self) -> tuple[str, ...]:
        """Every Gemini key configured, GEMINI_API_KEY first, each once."""
        given = (self.gemini_api_key, *self.gemini_api_keys)
        keys = (k.get_secret_value().strip() for k in given if k is not None)
        return tuple(dict.fromkeys(k for k in keys if k))

    @field_validator("chatbrush_provider", "gemini_auth_header", mode="before")
    @classmethod
    def _provider_choices(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("chatbrush_log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("gemini_base_url", "openai_base_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return http_url(value)

    # --- cost, budgets and limits (issue 9); US dollars, unset: no limit
    chatbrush_prices: str | None = Field(
        None, description="price overrides: a TOML or JSON file, or inline JSON"
    )
    chatbrush_user_daily_usd: float | None = Field(None, ge=0)
    chatbrush_user_monthly_usd: float | None = Field(None, ge=0)
    chatbrush_chat_daily_usd: float | None = Field(None, ge=0)
    chatbrush_chat_monthly_usd: float | None = Field(None, ge=0)
    chatbrush_monthly_usd: float | None = Field(None, ge=0, description="bot-wide cap")
    chatbrush_user_per_minute: int | None = Field(
        DEFAULT_USER_PER_MINUTE, ge=1, le=10_000,
        description="model calls one person may start a minute (`none`: no limit)",
    )
    chatbrush_exempt_admins: bool = Field(
        False, description="operators (CHATBRUSH_ADMINS) skip user and chat limits"
    )
    chatbrush_rate_limit_storage: str = Field(
        "memory://", description="where per-minute counts live (a `limits` storage URI)"
    )
    chatbrush_max_concurrent_calls: int | None = Field(None, ge=1, le=10_000)
    chatbrush_calls_per_person: int | None = Field(
        DEFAULT_CALLS_PER_PERSON, ge=1, le=10_000,
        description="model calls one person may have under way at once (`none`: no cap)",
    )
    chatbrush_calls_per_chat: int | None = Field(
        DEFAULT_CALLS_PER_CHAT, ge=1, le=10_000,
        description="model calls one chat may have under way at once (`none`: no cap)",
    )

    @field_validator(
        "chatbrush_user_daily_usd", "chatbrush_user_monthly_usd", "chatbrush_chat_daily_usd",
        "chatbrush_chat_monthly_usd", "chatbrush_monthly_usd",
        "chatbrush_max_concurrent_calls", "chatbrush_prices", "chatbrush_metrics_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("chatbrush_user_per_minute", "chatbrush_calls_per_person",
                     "chatbrush_calls_per_chat", mode="before")
    @classmethod
    def _none_lifts(cls, value: Any, info: ValidationInfo) -> Any:
        """``none`` (or ``off``, ``unlimited``) lifts a limit that is on by default; an
        empty value keeps the default."""
        if isinstance(value, str) and value.strip().lower() in ("none", "off", "unlimited"):
            return None
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name or ""].default
        return value

    # --- provenance (issue 11)
    chatbrush_c2pa: bool = Field(True, description="sign sent pictures with Content Credentials")
    chatbrush_c2pa_cert: Path | None = Field(None, description="PEM chain, signing cert first")
    chatbrush_c2pa_key: Path | None = Field(None, description="PEM private key of that cert")
    chatbrush_c2pa_dir: Path | None = Field(
        None, description="where the self-signed pair is kept (default: beside the database)"
    )
    chatbrush_export_max_bytes: int = Field(
        200_000_000, ge=1_000_000,
        description="largest /export zip (built in memory); platforms may allow less",
    )
    chatbrush_retention_days: float | None = Field(
        None, gt=0, description="remove pictures of conversations idle this long"
    )
    chatbrush_blocked_terms: CommaList = ()
    chatbrush_blocked_patterns: Path | None = Field(
        None, description="file of regular expressions refused in prompts, one a line"
    )

    @field_validator("chatbrush_c2pa_cert", "chatbrush_c2pa_key", "chatbrush_c2pa_dir",
                     "chatbrush_blocked_patterns", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: Any) -> Any:
        # `CHATBRUSH_C2PA_KEY=` in a .env means "not set", not the current directory
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("chatbrush_blocked_terms", mode="before")
    @classmethod
    def _split_terms(cls, value: Any) -> Any:
        # Chinese keyboards type the full-width comma (，) and the enumeration comma (、)
        if isinstance(value, str):
            return tuple(t.strip() for t in re.split(r"[,，、]", value) if t.strip())
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None  # `DATABASE_URL=` in a .env means "not set"
        if isinstance(raw, str) and not raw.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// or postgres:// URL")
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
    """Read the core settings, turning validation errors into one line naming the
    variable."""
    return read_settings(Settings, **overrides)


def read_settings(cls: type[Group], **overrides: Any) -> Group:
    """Read the settings group ``cls``; a validation error becomes :class:`SettingsError`,
    one line naming the variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "settings"
        message = str(first.get("msg", "invalid value"))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SettingsError(f"invalid setting {name}: {message}{more}") from None
