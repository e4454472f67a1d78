"""What an adapter hands its events to: the one port between a platform and the flow.

An adapter only needs to store an event and learn whether it was stored; it never sees
the intake that does it (:class:`bot.flow.intake.Intake` implements this port), so the
core's platform registry can name the port without importing the flow above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.core.events import Incoming


class IntakeClosed(RuntimeError):
    """The bot is shutting down and takes no new events (adapters answer "try later")."""


@dataclass(frozen=True)
class Receipt:
    """An event safely in the inbox: ``new`` is False for a re-delivery of a stored one."""

    entry_id: int
    new: bool


class Receiver(Protocol):
    async def receive(self, event: Incoming) -> Receipt | None:
        """Store ``event`` if it is for the bot (``None`` if it is not); returns once it is
        committed, so only then may the platform be told it arrived. Raises
        :class:`IntakeClosed` while shutting down."""
        ...
