"""What a stopped bot missed: the gateway does not redeliver it, so on every (re)connect the
adapter reads channel history after the newest message it handled, for the channels with
conversations in the last day. The intake's dedupe drops whatever was stored already.

The place reached in each channel is kept in a small JSON file beside the database
(``DISCORD_CATCH_UP_FILE``): a Discord message id is a snowflake, ordered by time, so one
id per channel says where to resume. One process holds a bot's gateway connection, so one
file suffices.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: channels with a conversation in this many seconds are caught up on
ACTIVE_SECONDS = 86400.0


@dataclass
class Place:
    """Where a channel was read up to: the newest message handled, and when."""

    after: int
    at: float
    guild: int | None = None
    private: bool = False


class CatchUpPlaces:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.places: dict[int, Place] = {}
        self._lock = asyncio.Lock()
        try:
            raw = json.loads(path.read_text())
            self.places = {int(k): Place(**v) for k, v in raw.items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError) as exc:
            log.warning("Discord: %s is unreadable (%s); starting without catch-up", path, exc)

    def active(self, *, now: float | None = None) -> dict[int, Place]:
        since = (now or time.time()) - ACTIVE_SECONDS
        return {c: p for c, p in self.places.items() if p.at >= since}

    def known(self, channel_id: int) -> bool:
        return channel_id in self.places

    async def reached(self, channel_id: int, message_id: int, *, guild: int | None,
                      private: bool) -> None:
        """``message_id`` in ``channel_id`` was handled (stored, or found not ours)."""
        place = self.places.get(channel_id)
        if place is not None and place.after >= message_id:
            return
        self.places[channel_id] = Place(message_id, time.time(), guild, private)
        async with self._lock:
            await asyncio.to_thread(self._write)

    def _write(self) -> None:
        since = time.time() - ACTIVE_SECONDS
        data = {str(c): asdict(p) for c, p in self.places.items() if p.at >= since}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.path)
