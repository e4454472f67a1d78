"""What is particular to the SQLite backend: the file, its schema, one process per file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.events import ChatKey, Incoming, Sender
from bot.store import InboxStatus
from storage.migrations import MIGRATIONS
from storage.sqlite import DatabaseInUse, SqliteDatabase, SqliteStore

CHAT = ChatKey("telegram", "-100")


def test_schema_is_migrated_and_wal_is_on(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "bot.db")
    assert db.schema_version == len(MIGRATIONS)
    assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert int(db.db.execute("PRAGMA busy_timeout").fetchone()[0]) >= 1000
    db.close()


def test_reopening_does_not_rerun_migrations(tmp_path: Path) -> None:
    SqliteDatabase(tmp_path / "a.db").close()
    again = SqliteDatabase(tmp_path / "a.db")  # would fail with "table threads already exists"
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_a_database_of_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO threads (platform, chat_id, topic_id, created_at)"
                 " VALUES ('telegram', '1', '', 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    db = SqliteDatabase(path)
    thread = db.get_thread(1)
    assert thread is not None and thread.lane == ""
    assert db.schema_version == len(MIGRATIONS)
    db.close()


def test_a_second_process_cannot_open_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    held = SqliteDatabase(path)
    code = ("import sys; from storage.sqlite import SqliteDatabase, DatabaseInUse\n"
            f"try:\n    SqliteDatabase({str(path)!r})\n"
            "except DatabaseInUse as exc:\n    print(exc); sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 3, result.stderr
    assert "another chatbrush process" in result.stdout and "PostgreSQL" in result.stdout
    held.close()
    SqliteDatabase(path).close()  # free again once the first one closed


def test_the_same_file_twice_in_one_process_is_refused_too(tmp_path: Path) -> None:
    held = SqliteDatabase(tmp_path / "x.db")
    with pytest.raises(DatabaseInUse):
        SqliteDatabase(tmp_path / "x.db")
    held.close()


async def test_events_a_dead_run_left_processing_are_claimable_at_once(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    first = await SqliteStore.open(path)
    incoming = Incoming(chat=CHAT, message_id="1", sender=Sender("7"), text="x")
    entry, _ = await first.inbox_add(incoming, lane="A")
    await first.inbox_claim("dead-run", limit=1, lease_seconds=3600, platforms=["telegram"])
    await first.close()  # as good as killed: the row stays "processing" under a long lease
    again = await SqliteStore.open(path)
    [resumed] = await again.inbox_claim("new-run", limit=1, lease_seconds=60,
                                        platforms=["telegram"])
    assert resumed.id == entry.id and resumed.status is InboxStatus.PROCESSING
    await again.close()


def test_a_second_connection_sees_committed_turns(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "c.db")
    thread = db.create_thread(CHAT, lane="A")
    db.add_turn(thread.id, parent_id=None, role="user", parts=[])
    other = sqlite3.connect(db.filename)
    assert other.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1
    other.close()
    db.close()
