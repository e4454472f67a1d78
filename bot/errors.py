"""The one exception the core raises to stop handling a message and tell the user why."""

from __future__ import annotations


class UserFacingError(Exception):
    """Stop handling this message; ``str()`` is the short line to show (no internals)."""
