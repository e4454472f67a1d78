"""The chat settings port: what a chat's admins changed with ``/settings``."""

from __future__ import annotations

from typing import Protocol

from bot.core.events import ChatKey


class ChatSettingsStore(Protocol):
    async def chat_settings(self, chat: ChatKey) -> dict[str, str]:
        """The settings a chat's admins changed, by name (the topic is ignored: a setting
        applies to the whole chat); settings never changed are absent."""
        ...

    async def set_chat_setting(self, chat: ChatKey, name: str, value: str | None, *,
                               changed_by: str) -> None:
        """Store one setting of the chat (replacing its value); ``None`` removes it, so
        the operator's default applies again."""
        ...
