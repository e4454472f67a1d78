"""The exceptions the core raises to stop handling a message: one to tell the user why,
one to step aside silently for another process."""

from __future__ import annotations


class UserFacingError(Exception):
    """Stop handling this message; ``str()`` is the short line to show (no internals)."""


class ClaimLost(Exception):
    """This process's lease on the message ran out (it stalled, or could not renew it) and
    another process took the message over: stop without a model call, a reply or a record,
    since that process now does all three."""
