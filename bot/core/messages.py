"""User-facing lines shared by the core and the adapters (one wording everywhere).

Constants are marked with ``N_()`` and translated where they are shown (``_(CONSTANT)``);
the functions answer in the language being spoken.
"""

from __future__ import annotations

from bot.kit.formatting import readable_size
from bot.kit.i18n import N_, _

SUPPORTED_FORMATS = N_("a photo, or a PNG, JPEG, WebP or HEIC file")
QUEUED_NOTICE = N_(
    "Another request in this conversation is still being worked on; yours is next in line."
)
DOWNLOAD_FAILED = N_("I couldn't download that file. Please send it again.")


def file_named(name: str | None) -> str:
    """“holiday.png”, or "That file" when the platform gave no name."""
    return f"“{name}”" if name else _("That file")


def too_large(size: int | None, limit: int, name: str | None = None) -> str:
    if size:
        what = _("{file} is too large ({size})").format(file=file_named(name),
                                                        size=readable_size(size))
    else:
        what = _("{file} is too large").format(file=file_named(name))
    return _("{what}; I can take images up to {limit}. Send it as a photo or a smaller "
             "file.").format(what=what, limit=readable_size(limit))
