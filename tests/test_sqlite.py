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


def _png_with(marker: bytes) -> bytes:
    import io
    import zlib

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    png = out.getvalue()
    chunk = len(marker).to_bytes(4, "big") + b"tEXt" + marker
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    return png[:-12] + chunk + png[-12:]


def _database_files_contain(folder: Path, marker: bytes) -> bool:
    """Whether the database file or its WAL/shm hold ``marker`` (they must exist)."""
    files = [p for p in folder.iterdir() if p.name.startswith("bot.db") and p.is_file()]
    assert files
    return any(marker in p.read_bytes() for p in files)


def _files_contain(folder: Path, marker: bytes) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes()]


async def test_image_bytes_live_in_files_beside_the_database(tmp_path: Path) -> None:
    from bot.store import NewImage, NewPart

    store = await SqliteStore.open(tmp_path / "bot.db")
    marker = b"Comment\x00only-in-the-image-file-7f3a"
    image = NewImage(_png_with(marker), "image/png", 8, 8)
    thread = await store.create_thread(CHAT, lane="A")
    turn = await store.add_turn(thread.id, parent_id=None, role="user",
                                parts=[NewPart(image=image)])
    sha = turn.images[0].sha256
    assert await store.image_bytes(sha) == image.data
    assert not _database_files_contain(tmp_path, marker)
    assert _files_contain(tmp_path / "bot.db-images", marker) == [sha]
    await store.delete_thread(thread.id)  # the only turn naming it: the file goes too
    assert _files_contain(tmp_path / "bot.db-images", marker) == []
    with pytest.raises(KeyError):
        await store.image_bytes(sha)
    await store.close()


async def test_a_file_whose_turn_never_committed_is_swept(tmp_path: Path) -> None:
    import os
    import time

    from storage.blobs import BlobFiles

    first = await SqliteStore.open(tmp_path / "bot.db")
    await first.close()
    blobs = BlobFiles(tmp_path / "bot.db-images")
    orphan = blobs.put(b"written, then the process died before the commit")
    hour_ago = time.time() - 7200
    os.utime(blobs.path(orphan), (hour_ago, hour_ago))
    fresh = blobs.put(b"being written by a turn right now")
    again = await SqliteStore.open(tmp_path / "bot.db")
    assert not blobs.exists(orphan) and blobs.exists(fresh)
    await again.close()


def test_images_stored_in_rows_by_an_older_release_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO images (sha256, mime_type, width, height, size, data, created_at)"
                 " VALUES ('abc', 'image/png', 1, 1, 3, x'010203', 0)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    db = SqliteDatabase(path)
    assert db.image_bytes("abc") == b"\x01\x02\x03"
    db.close()


async def test_an_unreadable_inbox_record_fails_alone_instead_of_blocking(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    bad, _ = await store.inbox_add(Incoming(chat=CHAT, message_id="1", sender=Sender("7")),
                                   lane="A")
    good, _ = await store.inbox_add(Incoming(chat=CHAT, message_id="2", sender=Sender("7")),
                                    lane="B")
    broken = '{"chat": 1'  # cut off: not JSON any more
    await store.run(store.sync.db.execute, "UPDATE inbox SET event = ? WHERE id = ?",
                    [broken, bad.id])
    claimed = await store.inbox_claim("p", limit=5, lease_seconds=60, platforms=["telegram"])
    assert [e.id for e in claimed] == [good.id]
    failed = await store.run(store.sync.db.execute,
                             "SELECT status, error FROM inbox WHERE id = ?", [bad.id])
    status, error = failed.fetchone()
    assert status == "failed" and "unreadable" in error
    await store.close()
