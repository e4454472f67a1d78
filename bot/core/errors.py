"""The exceptions the core raises to stop handling a message: one to tell the user why,
one to step aside silently for another process; and the lazy text the first carries."""

from __future__ import annotations

from typing import Any

from bot.kit.i18n import _


class LazyText:
    """A user-facing line translated when it is shown, not when it is made.

    ``LazyText(N_("Picture {number} failed"), number=2)``: ``str()`` looks the message up
    in the language being spoken at that moment (:func:`bot.kit.i18n.speaking`) and fills
    the placeholders after translation, so an error raised anywhere reaches a Chinese chat
    in Chinese when the intake sends it.
    """

    __slots__ = ("args", "message")

    def __init__(self, message: str, /, **args: Any) -> None:
        self.message = message
        self.args = args

    def __str__(self) -> str:
        text = _(self.message)
        return text.format(**self.args) if self.args else text

    def __repr__(self) -> str:
        return f"LazyText({self.message!r}, **{self.args!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LazyText) and other.message == self.message
                and other.args == self.args)

    def __hash__(self) -> int:
        return hash(self.message)


class UserFacingError(Exception):
    """Stop handling this message; ``str()`` is the short line to show (no internals),
    in the language spoken when it is shown (give a :class:`LazyText` for that; a plain
    ``str`` is shown as it is)."""

    def __init__(self, message: str | LazyText, *args: object) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


class ClaimLost(Exception):
    """This process's lease on the message ran out (it stalled, or could not renew it) and
    another process took the message over: stop without a model call, a reply or a record,
    since that process now does all three."""
