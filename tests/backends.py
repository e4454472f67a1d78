"""Every storage backend the suites run against, opened the same way (as aiogram runs its
storage tests over each storage): a fresh, empty store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.store import Store

BACKENDS = ("sqlite",)


def store_url(backend: str, tmp_path: Path) -> str:
    """The ``CHATBRUSH_DB`` value that selects ``backend`` for one test."""
    if backend == "sqlite":
        return str(tmp_path / "chatbrush.db")
    raise ValueError(backend)


@asynccontextmanager
async def open_backend(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    from storage.sqlite import open_store

    store = await open_store(store_url(backend, tmp_path))
    try:
        yield store
    finally:
        await store.close()
