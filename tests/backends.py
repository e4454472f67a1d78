"""Every storage backend the suites run against, opened the same way (as aiogram runs its
storage tests over each storage): a fresh, empty store per test.

PostgreSQL runs on a real server the tests start themselves (:mod:`tests.postgres_server`);
each test gets a database of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import psycopg

from bot.core.store import Store
from tests.postgres_server import shared_server

BACKENDS = ("sqlite", "postgres")

#: each open store's backend and URL, for :func:`execute`
_OPENED: WeakKeyDictionary[Any, tuple[str, str]] = WeakKeyDictionary()


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
    _OPENED[store] = (backend, url)
    try:
        yield store
    finally:
        await store.close()
        give_back(backend, url)


def give_back(backend: str, url: str) -> None:
    """The test is done with the store at ``url`` (a PostgreSQL database is reused)."""
    if backend == "postgres":
        shared_server().give_back(url)


async def execute(store: Store, statement: str, params: Sequence[Any] = ()
                  ) -> list[tuple[Any, ...]]:
    """Run one SQL statement (``?`` placeholders) on the database behind ``store``, behind
    its back: for a test to break or inspect what the port would never write."""
    backend, url = _OPENED[store]
    if backend == "sqlite":
        from storage.sqlite import SqliteStore

        assert isinstance(store, SqliteStore)
        cursor = await store.run(store.sync.db.execute, statement, list(params))
        return [tuple(row) for row in cursor.fetchall()]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(statement.replace("?", "%s"), list(params))
        return [tuple(row) for row in await cursor.fetchall()] if cursor.description else []
