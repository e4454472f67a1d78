"""Why a model call failed, in classes the core can act on and count.

It lives in the core because the usage port records it and ``/stats`` reports it; the
model providers (bot/models) raise it with their errors.
"""

from __future__ import annotations

import enum


class FailureKind(enum.Enum):
    REFUSED = "refused"  # safety / policy block: rephrasing may help
    NO_IMAGE = "no_image"  # the model answered but made no picture
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # 5xx, network, timeout after retries
    BAD_REQUEST = "bad_request"  # 4xx we must not retry
    AUTH = "auth"  # key missing, invalid or without access

    @classmethod
    def parse(cls, stored: str | None) -> FailureKind | None:
        """The kind a store kept as text; ``None`` for a call recorded without a known
        class (rows written before a kind existed must still be counted)."""
        try:
            return cls(stored)
        except ValueError:
            return None
