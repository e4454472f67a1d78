"""/help, written for each platform: how people talk to the bot differs between them
(in Slack you continue in the thread; in Telegram you reply to a picture)."""

from __future__ import annotations

from bot.flow.commands import COMMANDS
from bot.kit.i18n import N_, _

INTRO = N_("I edit pictures with Google's Gemini image models.")
TELEGRAM = (
    N_("Send a photo with what to change (“make it watercolor”), or describe a new picture."),
    N_("In a group, mention me or reply to one of my messages."),
    N_("Reply to my picture to keep editing it (“now add a hat”); reply to an older version "
       "to branch from it."),
    N_("Reply to anyone's photo and mention me to edit that photo."),
    N_("Send several photos as one album to combine them, or with /each to give each one "
       "the same edit."),
)
SLACK = (
    N_("Mention me with a picture and what to change (“make it watercolor”), or describe a "
       "new picture."),
    N_("I answer in the thread. Keep going there without mentioning me again (“now add a "
       "hat”); each thread is its own conversation."),
    N_("To edit a picture someone posted, mention me in its thread."),
    N_("Attach several pictures to one message to combine them, or say “each” to give each "
       "one the same edit."),
    N_("In a direct message with me no mention is needed."),
)
CONSOLE = (
    N_("Attach a picture with @path/to/photo.jpg and say what to change, or describe a new "
       "picture."),
    N_("Each line continues the current picture; /new starts over."),
)


def help_text(platform: str, prefix: str) -> str:
    tips = {"slack": SLACK, "console": CONSOLE}.get(platform, TELEGRAM)
    lines = [_(INTRO), *(f"• {_(tip)}" for tip in tips), "", _("Commands:")]
    lines += [f"{prefix}{c.usage.lstrip('/')} — {_(c.description)}" for c in COMMANDS]
    return "\n".join(lines)
