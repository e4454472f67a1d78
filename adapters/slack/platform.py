"""What the core needs to know of Slack (the ``chatbrush.platforms`` entry point).

Light on purpose: the core reads it for every Slack event's /help and allow-list, so
slack-bolt loads only when the adapter is built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.slack.settings import SlackSettings
from bot.core.platforms import PlatformInfo
from bot.kit.i18n import N_

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

log = logging.getLogger(__name__)

HELP_TIPS = (
    N_("Mention me with a picture and what to change (“make it watercolor”), or describe a "
       "new picture."),
    N_("I answer in the thread. Keep going there without mentioning me again (“now add a "
       "hat”); each thread is its own conversation."),
    N_("To edit a picture someone posted, mention me in its thread."),
    N_("Attach several pictures to one message to combine them, or say “each” to give each "
       "one the same edit."),
    N_("In a direct message with me no mention is needed."),
)


def create(settings: Settings, intake: Receiver) -> SlackAdapter | None:
    """The adapter, when Slack is configured (a bot token and a way in)."""
    group = SlackSettings.of(settings)
    if group.slack_bot_token is None:
        return None
    if group.slack_app_token is None and group.slack_signing_secret is None:
        log.warning(
            "Slack: SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN nor "
            "SLACK_SIGNING_SECRET; the Slack adapter stays off."
        )
        return None
    from adapters.slack.adapter import SlackAdapter

    return SlackAdapter(settings, intake)


SLACK = PlatformInfo(
    name="slack",
    title="Slack",
    help_tips=HELP_TIPS,
    settings=SlackSettings,
    create=create,
    setup_hint="SLACK_BOT_TOKEN with SLACK_APP_TOKEN or SLACK_SIGNING_SECRET",
    # its request lines are noise at INFO
    chatty_loggers=("slack_bolt",),
)
