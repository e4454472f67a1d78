"""User-facing lines shared by the core and the adapters (one wording everywhere)."""

from __future__ import annotations

SUPPORTED_FORMATS = "a photo, or a PNG, JPEG, WebP or HEIC file"
QUEUED_NOTICE = (
    "Another request in this conversation is still being worked on; yours is next in line."
)
DOWNLOAD_FAILED = "I couldn't download that file. Please send it again."


def megabytes(size: int) -> str:
    """``3.4 MB``, or ``270 kB`` below a megabyte (``0.1 MB`` would hide the difference)."""
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{max(1, size // 1000)} kB"


def file_named(name: str | None) -> str:
    """“holiday.png”, or "That file" when the platform gave no name."""
    return f"“{name}”" if name else "That file"


def too_large(size: int | None, limit: int, name: str | None = None) -> str:
    what = f"{file_named(name)} is too large" + (f" ({megabytes(size)})" if size else "")
    return (f"{what}; I can take images up to {megabytes(limit)}. "
            "Send it as a photo or a smaller file.")
