"""A bounded cache of parsed turn parts, so a long thread is not re-parsed every turn.

Building a context reads the recent path of a thread; each model turn's parts are a JSON
document that can carry ``thoughtSignature`` values of hundreds of kilobytes. Parsing them
again on every turn made the engine's work grow with the thread. Entries are keyed by the
turn *and* a checksum of its stored JSON, so a turn whose parts changed (scrubbed by
/forget, say — or by another process sharing the database) is simply parsed afresh: the
cache can be stale only in memory use, never in content. Bounded by the JSON bytes held.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable

from bot.core.threads import StoredPart

Parts = tuple[StoredPart, ...]


class ParsedParts:
    def __init__(self, parse: Callable[[str], Parts], *, max_bytes: int = 32 * 1024 * 1024,
                 min_size: int = 2048) -> None:
        """``min_size``: smaller documents parse faster than they hash; not cached."""
        self._parse = parse
        self._max_bytes = max_bytes
        self._min_size = min_size
        self._entries: OrderedDict[tuple[int, int, int], Parts] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, turn_id: int, raw: str) -> Parts:
        if len(raw) < self._min_size:
            return self._parse(raw)
        key = (turn_id, len(raw), zlib.crc32(raw.encode("utf-8", "surrogatepass")))
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        parts = self._parse(raw)
        with self._lock:
            self.misses += 1
            if key not in self._entries and len(raw) <= self._max_bytes:
                self._entries[key] = parts
                self._bytes += len(raw)
                while self._bytes > self._max_bytes:
                    (_, size, _), _ = self._entries.popitem(last=False)
                    self._bytes -= size
        return parts

    @property
    def bytes_held(self) -> int:
        return self._bytes
