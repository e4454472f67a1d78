"""What a chat's admins may choose for their chat; the operator's settings are the defaults.

The engine asks :meth:`bot.engine.Engine.chat_settings` for these on every turn, so a
feature that depends on a chat's choice (the model, the aspect ratio, whether pictures go
out as files, what Content Credentials may say) reads it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings


@dataclass(frozen=True)
class ChatSettings:
    model: str
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


def defaults(settings: Settings, model: str) -> ChatSettings:
    """A chat that changed nothing: the operator's choices."""
    return ChatSettings(
        model=model,
        aspect_ratio=settings.gemini_aspect_ratio,
        image_size=settings.gemini_image_size,
    )
