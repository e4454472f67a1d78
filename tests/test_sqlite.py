"""What is particular to the SQLite backend: the file, its schema, one process per file."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender
from bot.core.ports.inbox import InboxStatus
from bot.core.ports.threads import NewImage, NewPart
from bot.core.threads import Role
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
    db.add_turn(thread.id, parent_id=None, role=Role.USER, parts=[])
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
    store = await SqliteStore.open(tmp_path / "bot.db")
    marker = b"Comment\x00only-in-the-image-file-7f3a"
    image = NewImage(_png_with(marker), "image/png", 8, 8)
    thread = await store.create_thread(CHAT, lane="A")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
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


def found_in(db: SqliteDatabase, marker: bytes) -> list[str]:
    """Which of the database's files hold ``marker``: the file, its WAL and shared-memory
    files, and every picture file beside it."""
    folder = Path(db.filename).parent
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and str(p.relative_to(folder)).startswith("bot.db")
                  and marker in p.read_bytes())


def test_forgotten_pictures_and_words_leave_no_bytes_in_the_files(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "bot.db")
    picture = b"PICTURE-MARKER-" + os.urandom(16) + bytes(range(256)) * 64
    old_picture = b"OLD-PICTURE-MARKER-" + os.urandom(16) + b"\x01" * 5000
    words = "WORDS-MARKER-" + os.urandom(8).hex()
    bobs = b"BOB-MARKER-" + os.urandom(16) + b"\x00" * 5000
    ann = Sender("1", "Ann")
    entry, _ = db.inbox_add(Incoming(chat=CHAT, message_id="1", sender=ann, text=words,
                                     attachments=(Attachment(AttachmentKind.IMAGE,
                                                             data=picture),)),
                            lane="A")
    thread = db.create_thread(CHAT, lane="A")
    turn = db.add_turn(thread.id, parent_id=None, role=Role.USER, author_id="1",
                       author_name="Ann",
                       parts=[NewPart(image=NewImage(picture, "image/png", 9, 9)),
                              NewPart(image=NewImage(old_picture, "image/png", 9, 9)),
                              NewPart(text=words)], event_id=entry.id)
    # the second picture as a release before picture files kept it: in its row
    assert db.blobs is not None
    old_sha = turn.images[1].sha256
    db.db.execute("UPDATE images SET data = ?, location = 'db' WHERE sha256 = ?",
                  [old_picture, old_sha])
    db.blobs.path(old_sha).unlink()
    db.add_turn(thread.id, parent_id=None, role=Role.USER, author_id="2", author_name="Bob",
                parts=[NewPart(image=NewImage(bobs, "image/png", 9, 9))])
    db.inbox_finish([entry.id], status=InboxStatus.DONE)
    db.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # some pages in the file, all in the WAL
    assert found_in(db, picture[:64]) and found_in(db, old_picture[:64])
    # a second name for the picture file's blocks: shows they are overwritten, not unlinked
    witness = tmp_path / "witness"
    os.link(db.blobs.path(turn.images[0].sha256), witness)

    db.forget_author("telegram", "1", chat_id=CHAT.chat_id)

    assert found_in(db, picture[:64]) == []
    assert found_in(db, old_picture[:64]) == []
    assert found_in(db, base64.b64encode(picture)[:64]) == []  # the inbox held it inline
    assert found_in(db, words.encode()) == []
    assert witness.read_bytes() == bytes(len(picture))
    assert found_in(db, bobs[:32]) != []  # Bob's picture is still there
    db.close()


def test_a_purge_erases_picture_files_and_shrinks_an_older_database(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "bot.db")
    assert db.blobs is not None
    thread = db.create_thread(CHAT, lane="A")
    for n in range(20):
        turn = db.add_turn(thread.id, parent_id=None, role=Role.USER, parts=[
            NewPart(image=NewImage(os.urandom(50_000), "image/png", 9, 9))])
        if n % 2:  # half of them as an older release stored them: in their rows
            sha = turn.images[0].sha256
            db.db.execute("UPDATE images SET data = ?, location = 'db' WHERE sha256 = ?",
                          [db.blobs.get(sha), sha])
            db.blobs.path(sha).unlink()
    db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = Path(db.filename).stat().st_size
    report = db.purge_idle_images(idle_before=time.time() + 1)
    assert report.images_erased == 20 and report.bytes_erased == 20 * 50_000
    assert [p for p in db.blobs.folder.rglob("*") if p.is_file()] == []
    after = Path(db.filename).stat().st_size
    assert after < before - 450_000
    assert report.bytes_reclaimed == before - after
    assert Path(db.filename + "-wal").stat().st_size == 0
    db.close()
