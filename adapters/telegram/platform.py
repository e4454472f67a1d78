"""What the core needs to know of Telegram (the ``chatbrush.platforms`` entry point).

Light on purpose: the core reads it for every Telegram event's /help, album and
allow-list, so python-telegram-bot loads only when the adapter is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.telegram.pacing import GROUP_PACE, pace_for_chat_id
from adapters.telegram.settings import TelegramSettings
from bot.core.events import ChatKey
from bot.core.platforms import PlatformInfo, SendPace
from bot.kit.i18n import N_

if TYPE_CHECKING:
    from adapters.telegram.adapter import TelegramAdapter
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

HELP_TIPS = (
    N_("Send a photo with what to change (“make it watercolor”), or describe a new picture."),
    N_("In a group, mention me or reply to one of my messages."),
    N_("Reply to my picture to keep editing it (“now add a hat”); reply to an older version "
       "to branch from it."),
    N_("Reply to anyone's photo and mention me to edit that photo."),
    N_("Send several photos as one album to combine them, or with /each to give each one "
       "the same edit."),
)


def send_pace(chat: ChatKey) -> SendPace | None:
    """The pace deliveries wait for before taking a shared place: a group's (a forum
    topic shares it). A person's second is waited out by the adapter's limiter: holding
    a place that long costs nobody much."""
    pace = pace_for_chat_id(chat.chat_id)
    return pace if pace is GROUP_PACE else None


def create(settings: Settings, intake: Receiver) -> TelegramAdapter | None:
    """The adapter, when TELEGRAM_BOT_TOKEN is set."""
    if not TelegramSettings.of(settings).configured():
        return None
    from adapters.telegram.adapter import TelegramAdapter

    return TelegramAdapter(settings, intake)


TELEGRAM = PlatformInfo(
    name="telegram",
    title="Telegram",
    help_tips=HELP_TIPS,
    settings=TelegramSettings,
    create=create,
    setup_hint="TELEGRAM_BOT_TOKEN",
    send_pace=send_pace,
    # its request lines are noise at INFO (and carry the token in URLs)
    chatty_loggers=("telegram.ext.Updater",),
)
