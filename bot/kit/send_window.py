"""A sliding window of one chat's sends, and a pause the platform asked for.

Platforms limit how many messages a bot may send to one chat in a window (Telegram: a group
20 a minute) and answer 429 with a pause beyond it. Both the core's delivery scheduler and an
adapter's own limiter keep such a window per chat; this is it, with nothing of the project.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Pace(Protocol):
    """At most ``messages`` within any ``seconds``."""

    @property
    def messages(self) -> int: ...

    @property
    def seconds(self) -> float: ...


@dataclass
class ChatWindow:
    """One chat's recent sends and pause: :meth:`ready` waits until another may go."""

    clock: Callable[[], float] = time.monotonic
    sent: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0
    #: the longest pace window seen: sends older than it no longer matter
    span: float = 0.0

    async def ready(self, pace: Pace | None, cost: int = 1) -> None:
        """Wait until ``cost`` more messages fit the pace and no pause holds, and count
        them as sent now (a send larger than the whole window waits for an empty one)."""
        while True:
            now = self.clock()
            if self.paused_until > now:
                await asyncio.sleep(self.paused_until - now)
                continue
            if pace is None:
                return
            self.span = max(self.span, pace.seconds)
            while self.sent and self.sent[0] <= now - pace.seconds:
                self.sent.popleft()
            if not self.sent or len(self.sent) + cost <= pace.messages:
                self.sent.extend([now] * cost)
                return
            await asyncio.sleep(self.sent[0] + pace.seconds - now)

    def pause(self, seconds: float) -> None:
        """The platform asked this chat (only) to wait ``seconds``."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def idle(self) -> bool:
        """Nothing it remembers still matters: no pause, no send within its window."""
        now = self.clock()
        return self.paused_until <= now and (not self.sent or self.sent[-1] <= now - self.span)
