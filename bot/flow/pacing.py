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
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.core.platforms import SendPace
from bot.kit.send_window import ChatWindow

#: sends of one chat that may be past its own queue at once (waiting on its pace, or in
#: a shared place): two, so an upload and the next one overlap, and never more
PLACES_PER_CHAT = 2


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
