"""What the core needs to know of Discord (the ``chatbrush.platforms`` entry point).

Light on purpose: the core reads it for every Discord event's /help and allow-list, so
discord.py loads only when the adapter is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.discord.settings import DiscordSettings
from bot.core.platforms import PlatformInfo
from bot.kit.i18n import N_

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

# Mostly the sentences Slack and Telegram register, so they share their translations.
HELP_TIPS = (
    N_("Mention me with a picture and what to change (“make it watercolor”), or describe a "
       "new picture."),
    N_("Reply to my picture to keep editing it (“now add a hat”); reply to an older version "
       "to branch from it."),
    N_("Reply to anyone's photo and mention me to edit that photo."),
    N_("Attach several pictures to one message to combine them, or say “each” to give each "
       "one the same edit."),
    N_("In a direct message with me no mention is needed."),
)


def create(settings: Settings, intake: Receiver) -> DiscordAdapter | None:
    """The adapter, when DISCORD_BOT_TOKEN is set."""
    if not DiscordSettings.of(settings).configured():
        return None
    from adapters.discord.adapter import DiscordAdapter

    return DiscordAdapter(settings, intake)


DISCORD = PlatformInfo(
    name="discord",
    title="Discord",
    help_tips=HELP_TIPS,
    settings=DiscordSettings,
    create=create,
    setup_hint="DISCORD_BOT_TOKEN",
    # discord.py logs every gateway event at DEBUG and each connection at INFO
    chatty_loggers=("discord",),
)
