"""Sending fairly between chats: one chat's backlog waits on its own pace, not on everyone.

Platforms limit how fast a bot may send to one chat (Telegram: 20 messages a minute to a
group, about one a second to a person). A send that waits for that limit while holding
one of the process's few delivery places makes every other chat wait too: 500 answers
for one group once filled all 24 places and a private chat's picture had not arrived
five minutes later. So a send here waits, in this order:

1. for one of its chat's own few places (:data:`PLACES_PER_CHAT`): a chat's backlog
   queues behind itself;
2. until its chat's window has room (the pace its platform registered,
   :class:`bot.core.platforms.SendPace`) and any pause the platform asked for (a 429's
   ``retry_after``) is over — holding nothing anybody else needs;
3. only then for a shared place. Those are handed out first come, first served, and
   each chat has at most :data:`PLACES_PER_CHAT` sends asking, so the chats with work
   are served in turn.

Generic on purpose: keys are whatever identifies a paced chat, paces come from the
platform (the core names none).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.core.platforms import SendPace

#: sends of one chat that may be past its own queue at once (waiting on its pace, or in
#: a shared place): two, so an upload and the next one overlap, and never more
PLACES_PER_CHAT = 2


@dataclass
class ChatWindow:
    """One chat's recent sends and pause: :meth:`ready` waits until another may go."""

    clock: Callable[[], float] = time.monotonic
    sent: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0
    #: the longest pace window seen: sends older than it no longer matter
    span: float = 0.0

    async def ready(self, pace: SendPace | None, cost: int = 1) -> None:
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


@dataclass
class _Chat:
    window: ChatWindow
    places: asyncio.Semaphore
    users: int = 0


class ChatPacer:
    """Shared send places handed out fairly between chats (see the module docstring)."""

    def __init__(self, places: int, *, per_chat: int = PLACES_PER_CHAT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._places = asyncio.Semaphore(places)
        self._per_chat = per_chat
        self._clock = clock
        self._chats: dict[Hashable, _Chat] = {}

    @asynccontextmanager
    async def place(self, key: Hashable, pace: SendPace | None, *,
                    cost: int = 1) -> AsyncIterator[None]:
        """Hold a shared place for one send of ``cost`` messages to chat ``key``, taken
        only once the chat may send (its own queue and pace are waited out first)."""
        chat = self._chats.get(key)
        if chat is None:
            chat = self._chats[key] = _Chat(ChatWindow(self._clock),
                                            asyncio.Semaphore(self._per_chat))
        chat.users += 1
        try:
            async with chat.places:
                await chat.window.ready(pace, cost)
                async with self._places:
                    yield
        finally:
            chat.users -= 1
            if chat.users == 0 and chat.window.idle():
                self._chats.pop(key, None)  # a quiet chat costs nothing to remember

    def pause(self, key: Hashable, seconds: float) -> None:
        """Hold chat ``key``'s next sends for ``seconds`` (a 429 for it); others go on."""
        chat = self._chats.get(key)
        if chat is not None:
            chat.window.pause(seconds)

    def waiting(self, key: Hashable) -> int:
        """Sends for chat ``key`` under way or queued (tests, metrics)."""
        chat = self._chats.get(key)
        return chat.users if chat is not None else 0
