"""A chat's settings as a value: what the work item of an event carries through the flow.

Only the types live here (the core carries them); reading, parsing and resolving them
over the operator's defaults is :mod:`bot.policy.chat_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChatLimits:
    """Money in micro-dollars per UTC day or calendar month, calls per minute; ``None``:
    no limit."""

    user_daily: int | None = None
    user_monthly: int | None = None
    chat_daily: int | None = None
    chat_monthly: int | None = None
    user_per_minute: int | None = None


@dataclass(frozen=True)
class ChatSettings:
    model: str
    #: None: the model's default; "auto": the shape of the picture being edited
    aspect_ratio: str | None = None
    image_size: str | None = None
    #: None: every user is answered in their own platform language
    language: str | None = None
    #: may Content Credentials carry the prompt (off: only that a model made it)
    credentials_prompt: bool = False
    #: send pictures as files, so the platform does not recompress them (Telegram)
    send_originals: bool = False
    #: words and patterns refused before any model call, besides the operator's
    blocked_terms: tuple[str, ...] = ()
    limits: ChatLimits = field(default_factory=ChatLimits)
    #: a size or ratio the service ignored is on record for this chat (read with the rest,
    #: so an answer that followed every setting costs no second read)
    ignored_on_record: bool = False
