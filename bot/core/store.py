"""The whole store, as the composition root opens it: the union of the narrow ports.

The core never imports a storage backend. ``storage/sqlite.py`` (the embedded default)
and ``storage/postgres.py`` implement every port and register themselves as entry points
in the ``chatbrush.stores`` group; :mod:`bot.app.runtime` picks one by URL and hands each
component the store typed as the port it needs (:mod:`bot.core.ports`).

The port's value types are importable from here too, for code written against the one
``Store`` of old; new code imports them from their port's module.
"""

from __future__ import annotations

from typing import Protocol

from bot.core.ports.images import ImageStore
from bot.core.ports.inbox import InboxEntry, InboxStatus, InboxStore, LinkedTurn
from bot.core.ports.privacy import AuthoredSummary, ForgetReport, PrivacyStore, PurgeReport
from bot.core.ports.settings import ChatSettingsStore
from bot.core.ports.stats import StatsStore, StoreStats
from bot.core.ports.threads import NewImage, NewPart, ThreadStore
from bot.core.ports.usage import (
    CallReport,
    ChatCalls,
    SpendLimit,
    SpendScope,
    SpendStore,
    UsageStore,
    UsageSummary,
)

__all__ = [
    "AuthoredSummary", "CallReport", "ChatCalls", "ChatSettingsStore", "ForgetReport",
    "ImageStore", "InboxEntry", "InboxStatus", "InboxStore", "LinkedTurn", "NewImage",
    "NewPart", "PrivacyStore", "PurgeReport", "SpendLimit", "SpendScope", "SpendStore",
    "StatsStore", "Store", "StoreStats", "ThreadStore", "UsageStore", "UsageSummary",
]


class Store(ThreadStore, ImageStore, InboxStore, UsageStore, SpendStore, ChatSettingsStore,
            PrivacyStore, StatsStore, Protocol):
    """Persistent state of the bot; every method is safe to call from the event loop."""

    async def close(self) -> None: ...
