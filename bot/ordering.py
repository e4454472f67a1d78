"""First come, first served, per key: the order in which work is *reserved* is the order
in which it runs.

``asyncio.Lock`` orders waiters by when they start waiting, which can differ from when a
message arrived: a photo that takes 50 ms to normalise would lose its place to a text
reply sent just after it. A :class:`Ticket` takes its place in line synchronously at
:meth:`Lines.reserve`, so the engine can reserve at arrival and wait later.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from types import TracebackType


class Ticket:
    """A place in one line; ``async with`` waits for its turn and leaves the line."""

    def __init__(self, lines: Lines, key: Hashable, gate: asyncio.Future[None]) -> None:
        self._lines = lines
        self._key = key
        self._gate = gate
        self._released = False

    async def __aenter__(self) -> Ticket:
        try:
            await asyncio.shield(self._gate)
        except BaseException:
            self.release()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        """Leave the line (idempotent), letting the next ticket in."""
        if not self._released:
            self._released = True
            self._lines._leave(self._key, self._gate)


class Lines:
    def __init__(self) -> None:
        self._lines: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def busy(self, key: Hashable) -> bool:
        """Whether a new ticket for ``key`` would have to wait."""
        return bool(self._lines.get(key))

    def reserve(self, key: Hashable) -> Ticket:
        line = self._lines.setdefault(key, deque())
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not line:
            gate.set_result(None)
        line.append(gate)
        return Ticket(self, key, gate)

    def _leave(self, key: Hashable, gate: asyncio.Future[None]) -> None:
        line = self._lines.get(key)
        if line is None:
            return
        was_first = bool(line) and line[0] is gate
        line.remove(gate)
        if not gate.done():
            gate.cancel()
        if not line:
            del self._lines[key]
        elif was_first and not line[0].done():
            line[0].set_result(None)
