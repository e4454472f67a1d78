"""/help, written for each platform: how people talk to the bot differs between them
(in one you continue in the thread, in another you reply to a picture), so each platform
registers its own tips (:attr:`bot.core.platforms.PlatformInfo.help_tips`)."""

from __future__ import annotations

from bot.core.platforms import platform_info
from bot.flow.commands import COMMANDS
from bot.kit.i18n import N_, _

INTRO = N_("I edit pictures with Google's Gemini image models.")


def help_text(platform: str, prefix: str) -> str:
    tips = platform_info(platform).help_tips
    lines = [_(INTRO), *(f"• {_(tip)}" for tip in tips), "", _("Commands:")]
    lines += [f"{prefix}{c.usage.lstrip('/')} — {_(c.description)}" for c in COMMANDS]
    return "\n".join(lines)
