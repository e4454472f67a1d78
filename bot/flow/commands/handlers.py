"""Which function answers which command (the specs users see are in ``bot.flow.commands``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.flow.commands import conversation, info, privacy, settings
from bot.flow.commands.command_context import CommandContext

Handler = Callable[[CommandContext], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "help": info.help_,
    "new": conversation.new,
    "each": conversation.each,
    "undo": conversation.undo,
    "history": conversation.history,
    "resend": conversation.resend,
    "reset": conversation.reset,
    "export": privacy.export,
    "forget": privacy.forget,
    "usage": info.usage,
    "stats": info.stats,
    "settings": settings.settings,
}
