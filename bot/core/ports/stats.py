"""The stats port: the store's figures for operators (``/stats``), as typed fields.

Formatting them (labels, language) is the reader's business, so renaming a label can never
break a reader that needs a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoreStats:
    threads: int = 0
    turns: int = 0
    versions: int = 0  # model turns
    failed_turns: int = 0
    undelivered_answers: int = 0  # stored answers not yet shown in their chat
    stored_images: int = 0
    image_bytes: int = 0
    users: int = 0  # distinct people (per platform) who made a model call
    model_calls: int = 0
    failed_calls: int = 0
    inbox_backlog: int = 0  # events received or processing (see InboxStore.inbox_backlog)


class StatsStore(Protocol):
    async def stats(self) -> StoreStats:
        """Counts over the whole store: a few full-table scans, so for ``/stats`` (an
        operator asking), never for a hot path."""
        ...
