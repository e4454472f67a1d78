"""What the core needs to know of Discord (the ``chatbrush.platforms`` entry point).

Light on purpose: the core reads it for every Discord event's /help and allow-list, so
discord.py loads only when the adapter is built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.discord.settings import DiscordSettings
from bot.core.platforms import PlatformInfo

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

# The same sentences Slack and Telegram register, so they share their translations in the
# one catalog. Deliberately not marked with N_() here: marking them would add this file to
# the catalog template under bot/ (tests/test_discord_translate.py checks each is
# translated).
HELP_TIPS = (
    "Mention me with a picture and what to change (“make it watercolor”), or describe a "
    "new picture.",
    "Reply to my picture to keep editing it (“now add a hat”); reply to an older version "
    "to branch from it.",
    "Reply to anyone's photo and mention me to edit that photo.",
    "Attach several pictures to one message to combine them, or say “each” to give each "
    "one the same edit.",
    "In a direct message with me no mention is needed.",
)


def create(settings: Settings, intake: Receiver) -> DiscordAdapter | None:
    """The adapter, when DISCORD_BOT_TOKEN is set."""
    if not DiscordSettings.of(settings).configured():
        return None
    from adapters.discord.adapter import DiscordAdapter

    # discord.py logs every gateway event at DEBUG and each connection at INFO
    logging.getLogger("discord").setLevel(logging.WARNING)
    return DiscordAdapter(settings, intake)


DISCORD = PlatformInfo(
    name="discord",
    title="Discord",
    help_tips=HELP_TIPS,
    settings=DiscordSettings,
    create=create,
    setup_hint="DISCORD_BOT_TOKEN",
)
