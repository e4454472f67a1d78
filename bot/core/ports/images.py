"""The images port: picture bytes, stored once by SHA-256 however many turns use them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class ImageStore(Protocol):
    async def image_bytes(self, sha256: str) -> bytes:
        """The stored bytes; ``KeyError`` when they were removed (retention, ``/forget``)."""
        ...

    async def missing_images(self, sha256s: Collection[str]) -> set[str]:
        """Those of ``sha256s`` whose bytes are no longer stored: turns keep the reference
        (and its hash, for the audit trail) after retention removed the picture."""
        ...
