"""The picture the bot sends back, as a plain value.

It lives in the kit (not in :mod:`bot.core.events`) because :mod:`bot.kit.images` builds
it and the kit imports nothing else from the project.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputImage:
    """An image the bot sends back; ``mime_type`` is what the bytes really are."""

    data: bytes
    mime_type: str = "image/png"
    width: int = 0
    height: int = 0

    @property
    def extension(self) -> str:
        return {
            "image/png": "png",
            "image/jpeg": "jpg",
            "image/webp": "webp",
            "image/gif": "gif",
        }.get(self.mime_type, "bin")
