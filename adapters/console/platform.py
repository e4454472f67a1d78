"""What the core needs to know of the console (the ``chatbrush.platforms`` entry point).

``chatbrush console`` runs it (:mod:`adapters.console.terminal`); it has no settings and is
never started by ``chatbrush run``. Whoever sits at the terminal runs the bot.
"""

from __future__ import annotations

from bot.core.platforms import PlatformInfo
from bot.kit.i18n import N_

HELP_TIPS = (
    N_("Attach a picture with @path/to/photo.jpg and say what to change, or describe a new "
       "picture."),
    N_("Each line continues the current picture; /new starts over."),
)

CONSOLE = PlatformInfo(
    name="console",
    title="the console",
    help_tips=HELP_TIPS,
    senders_are_operators=True,
)
