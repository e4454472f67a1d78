"""Every storage backend the suites run against, opened the same way (as aiogram runs its
storage tests over each storage): a fresh, empty store per test.

PostgreSQL runs on a real server the tests start themselves (:mod:`tests.postgres_server`);
each test gets a database of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.core.store import Store
from tests.postgres_server import shared_server

BACKENDS = ("sqlite", "postgres")


def store_url(backend: str, tmp_path: Path) -> str:
    """The URL (``CHATBRUSH_DB`` or ``DATABASE_URL``) that selects ``backend`` for one
    test: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "chatbrush.db")
    if backend == "postgres":
        return shared_server().fresh_database()
    raise ValueError(backend)


@asynccontextmanager
async def open_backend(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    url = store_url(backend, tmp_path)
    store: Store
    if backend == "postgres":
        from storage.postgres import open_store as open_postgres

        store = await open_postgres(url)
    else:
        from storage.sqlite import open_store as open_sqlite

        store = await open_sqlite(url)
    try:
        yield store
    finally:
        await store.close()
        give_back(backend, url)


def give_back(backend: str, url: str) -> None:
    """The test is done with the store at ``url`` (a PostgreSQL database is reused)."""
    if backend == "postgres":
        shared_server().give_back(url)
