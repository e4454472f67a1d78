"""SQLite persistence: the embedded default store (sqlite-utils), one file, one process.

The database file holds everything but the image bytes, which live as files named by
their SHA-256 in a folder beside it (``chatbrush.db-images/``, see storage/blobs.py): a
picture per turn would otherwise drive SQLite's WAL checkpoints into the turns' commits.
Back up both with ``cp -r``. WAL mode lets readers (``/history``, ``/usage``) proceed while a
turn is written; every turn is written atomically together with its image rows, the
thread's new head and the inbox entry's progress (its image files are on disk before).
Images are stored once by SHA-256, however many turns refer to them.

:class:`SqliteDatabase` is synchronous; :class:`SqliteStore` implements the core's
:class:`bot.core.store.Store` port by running every call on one dedicated worker thread, which
keeps writes serialised (no "database is locked" between our own writers) while the event
loop stays free. A lock file beside the database keeps a second process away: leases in
the inbox assume that whatever is left "processing" at start-up belongs to a dead run.
Several processes need PostgreSQL (``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import sqlite_utils

from bot.core.config import Settings, SettingsError
from bot.core.events import ChatKey, Incoming
from bot.core.failures import FailureKind
from bot.core.ports.inbox import InboxEntry, InboxStatus, LinkedTurn
from bot.core.ports.privacy import AuthoredSummary, ForgetReport, PurgeReport
from bot.core.ports.stats import StoreStats
from bot.core.ports.threads import NewImage, NewPart, NewRegion, TurnRegion
from bot.core.ports.usage import CallReport, ChatCalls, SpendLimit, SpendScope, UsageSummary
from bot.core.store import Store
from bot.core.threads import (
    REMOVED_BY_AUTHOR,
    ImageRef,
    Role,
    StoredPart,
    Thread,
    Turn,
    TurnStatus,
)
from storage.blobs import BlobFiles
from storage.migrations import MIGRATIONS
from storage.parsed_parts import ParsedParts
from storage.records import dump_parts as _dump_parts
from storage.records import entry_from_row as _entry
from storage.records import event_json, failure_counts, forgotten_events
from storage.records import load_parts as _load_parts
from storage.records import thread_from_row as _thread
from storage.records import turn_from_row as _turn

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_UNFINISHED_SQL = "('received', 'processing')"
#: the oldest event received in a lane where nothing is processing (readiness)
_OLDEST_STUCK = (
    "SELECT MIN(received_at) FROM inbox WHERE status = 'received' AND lane NOT IN"
    " (SELECT lane FROM inbox WHERE status = 'processing')"
)
#: ids per ``IN (…)`` list, well under SQLite's limit on bound variables
_CHUNK = 500
#: the file is compacted (VACUUM) after a purge once this share of its pages is free;
#: below it, new pictures simply reuse the freed pages
_COMPACT_FREE_SHARE = 0.10


class DatabaseInUse(SettingsError, RuntimeError):
    """Another process has this SQLite file open as its store: a set-up mistake, shown as
    the one line ``str()`` gives (a :class:`SettingsError`), never as a traceback."""


class SqliteDatabase:
    """All persistent state. Not thread-safe by itself: use one thread (see SqliteStore)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.filename = str(path)
        self._lock_file: IO[bytes] | None = None
        self.parsed_parts = ParsedParts(_load_parts)
        #: where image bytes live (None for an in-memory database: they stay in rows)
        self.blobs: BlobFiles | None = None
        if self.filename != ":memory:":
            Path(self.filename).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _exclusive_lock(Path(self.filename + ".lock"))
            self.blobs = BlobFiles(Path(self.filename + "-images"))
        conn = sqlite3.connect(self.filename, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if self.filename != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = NORMAL")
        # Deleted content is overwritten with zeros, not left in free pages: what /forget
        # and retention remove must be gone from the file, not merely unlinked.
        self.db.execute("PRAGMA secure_delete = ON")
        self._migrate()
        # Whatever a previous run left "processing" is nobody's now (the lock proves it):
        # make it claimable at once instead of after its lease.
        with self.db.atomic():
            self.db.execute(
                "UPDATE inbox SET lease_until = 0, owner = NULL WHERE status = 'processing'"
            )

    def _turn(self, row: Sequence[Any]) -> Turn:
        return _turn(row, self.parsed_parts)

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        version = self.schema_version
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self.db.atomic():
                for statement in statements:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ------------------------------------------------------------------ threads
    def create_thread(self, chat: ChatKey, *, lane: str, external_key: str | None = None,
                      created_by: str = "") -> Thread:
        now = time.time()
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO threads (platform, chat_id, topic_id, external_key, head_turn_id,"
                " created_at, created_by, lane) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                [chat.platform, chat.chat_id, chat.topic_id or "", external_key, now,
                 created_by, lane],
            )
        thread_id = cursor.lastrowid
        assert thread_id is not None
        return Thread(thread_id, chat, external_key, None, now, created_by, lane)

    def get_thread(self, thread_id: int) -> Thread | None:
        row = self.db.execute("SELECT * FROM threads WHERE id = ?", [thread_id]).fetchone()
        return _thread(row) if row else None

    def thread_by_key(self, chat: ChatKey, external_key: str) -> Thread | None:
        row = self.db.execute(
            "SELECT * FROM threads WHERE platform = ? AND chat_id = ? AND topic_id = ?"
            " AND external_key = ? ORDER BY id DESC LIMIT 1",
            [chat.platform, chat.chat_id, chat.topic_id or "", external_key],
        ).fetchone()
        return _thread(row) if row else None

    def current_thread(self, chat: ChatKey) -> Thread | None:
        row = self.db.execute(
            "SELECT t.* FROM chat_state s JOIN threads t ON t.id = s.current_thread_id"
            " WHERE s.platform = ? AND s.chat_id = ? AND s.topic_id = ?",
            [chat.platform, chat.chat_id, chat.topic_id or ""],
        ).fetchone()
        return _thread(row) if row else None

    def set_current_thread(self, chat: ChatKey, thread_id: int | None) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO chat_state (platform, chat_id, topic_id, current_thread_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (platform, chat_id, topic_id)"
                " DO UPDATE SET current_thread_id = excluded.current_thread_id",
                [chat.platform, chat.chat_id, chat.topic_id or "", thread_id],
            )

    def set_head(self, thread_id: int, turn_id: int | None, *,
                 done_event: int | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE threads SET head_turn_id = ? WHERE id = ?", [turn_id, thread_id]
            )
            if done_event is not None:
                self._finish([done_event], InboxStatus.DONE, None)

    def delete_thread(self, thread_id: int) -> None:
        """Forget a thread: its turns and links go; images nobody else uses go too."""
        gone: list[str] = []
        with self.db.atomic():
            self.db.execute("UPDATE chat_state SET current_thread_id = NULL"
                            " WHERE current_thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM message_links WHERE thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM turn_images WHERE turn_id IN"
                            " (SELECT id FROM turns WHERE thread_id = ?)", [thread_id])
            self.db.execute("UPDATE threads SET head_turn_id = NULL WHERE id = ?", [thread_id])
            self.db.execute("DELETE FROM turns WHERE thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM threads WHERE id = ?", [thread_id])
            gone = self._drop_unreferenced_images()
        self._delete_files(gone)
        self._truncate_wal()

    def _drop_unreferenced_images(self) -> list[str]:
        """Delete image rows no turn names (inside a transaction); returns the hashes whose
        files must go once it commits (a rollback must not have lost them)."""
        files = [row[0] for row in self.db.execute(
            "SELECT sha256 FROM images WHERE location = 'file'"
            " AND sha256 NOT IN (SELECT sha256 FROM turn_images)"
        ).fetchall()]
        self.db.execute("DELETE FROM images WHERE sha256 NOT IN (SELECT sha256 FROM turn_images)")
        return files

    def _delete_files(self, shas: Sequence[str]) -> None:
        if self.blobs is not None and shas:
            self.blobs.erase(shas)

    def _drop_unused_images(self) -> tuple[list[str], int, int]:
        """:meth:`_drop_unreferenced_images`, counted: (files to erase once committed, how
        many pictures, their stored size)."""
        count, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM images"
            " WHERE sha256 NOT IN (SELECT sha256 FROM turn_images)").fetchone()
        return self._drop_unreferenced_images(), int(count), int(size)

    # ------------------------------------------------------------------ turns
    def add_turn(
        self,
        thread_id: int,
        *,
        parent_id: int | None,
        role: Role,
        parts: Sequence[NewPart],
        author_id: str = "",
        author_name: str = "",
        status: TurnStatus = TurnStatus.OK,
        error: str | None = None,
        move_head: bool = True,
        event_id: int | None = None,
    ) -> Turn:
        """Write a turn, its images, the new head and the event's progress in one commit."""
        with self.db.atomic():
            turn = self._insert_turn(thread_id, parent_id, role, parts, author_id,
                                     author_name, status, error)
            if move_head:
                self.db.execute(
                    "UPDATE threads SET head_turn_id = ? WHERE id = ?", [turn.id, thread_id]
                )
            if event_id is not None:
                column = "answer_turn_id" if role == Role.MODEL else "turn_id"
                self.db.execute(f"UPDATE inbox SET {column} = ? WHERE id = ?",
                                [turn.id, event_id])
        return turn

    def add_linked_turns(self, thread_id: int, *, parent_id: int | None,
                         turns: Sequence[Sequence[NewPart]], author_id: str,
                         author_name: str, event_id: int) -> list[Turn]:
        """One user turn per picture and the event's record of them, in one commit."""
        with self.db.atomic():
            written = [self._insert_turn(thread_id, parent_id, Role.USER, parts, author_id,
                                         author_name, TurnStatus.OK, None)
                       for parts in turns]
            for position, turn in enumerate(written):
                self.db.execute(
                    "INSERT INTO inbox_turns (entry_id, position, turn_id) VALUES (?, ?, ?)",
                    [event_id, position, turn.id],
                )
        return written

    def _insert_turn(self, thread_id: int, parent_id: int | None, role: Role,
                     parts: Sequence[NewPart], author_id: str, author_name: str,
                     status: TurnStatus, error: str | None) -> Turn:
        """A turn and its images (inside the caller's transaction)."""
        now = time.time()
        role = Role(role)
        stored: list[StoredPart] = []
        for part in parts:
            if isinstance(part.image, NewImage):
                ref: ImageRef | None = self._put_image(part.image)
            else:
                ref = self._adopt_image(part.image) if part.image is not None else None
            stored.append(
                StoredPart(part.text, ref, part.thought, part.thought_signature,
                           dict(part.extra or {}))
            )
        version = None
        if role is Role.MODEL:
            version = 1 + int(self.db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM turns WHERE thread_id = ?",
                [thread_id],
            ).fetchone()[0])
        cursor = self.db.execute(
            "INSERT INTO turns (thread_id, parent_id, role, status, author_id, author_name,"
            " parts, created_at, version, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [thread_id, parent_id, role.value, status.value, author_id, author_name,
             _dump_parts(stored), now, version, error],
        )
        turn_id = cursor.lastrowid
        assert turn_id is not None
        shas = {p.image.sha256 for p in stored if p.image is not None}
        for sha in shas:
            self.db.execute(
                "INSERT OR IGNORE INTO turn_images (turn_id, sha256) VALUES (?, ?)",
                [turn_id, sha],
            )
        return Turn(turn_id, thread_id, parent_id, role, status, author_id, author_name,
                    tuple(stored), now, version, error)

    def mark_failed(self, turn_id: int, error: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE turns SET status = ?, error = ? WHERE id = ?",
                [TurnStatus.FAILED.value, error, turn_id],
            )

    def set_turn_region(self, turn_id: int, region: NewRegion,
                        picture: NewImage | ImageRef | None) -> None:
        with self.db.atomic():
            image = None
            if picture is not None:
                image = (self._put_image(picture) if isinstance(picture, NewImage)
                         else self._adopt_image(picture))
                self.db.execute("INSERT OR IGNORE INTO turn_images (turn_id, sha256)"
                                " VALUES (?, ?)", [turn_id, image.sha256])
            self.db.execute(
                "INSERT OR REPLACE INTO turn_regions (turn_id, mask, width, height,"
                " image_sha256) VALUES (?, ?, ?, ?, ?)",
                [turn_id, region.mask_png, region.width, region.height,
                 image.sha256 if image else None])

    def turn_regions(self, turn_ids: Sequence[int]) -> dict[int, TurnRegion]:
        if not turn_ids:
            return {}
        marks = ", ".join("?" * len(turn_ids))
        rows = self.db.execute(
            "SELECT r.turn_id, r.mask, r.width, r.height, i.sha256, i.mime_type, i.width,"
            " i.height, i.size FROM turn_regions r LEFT JOIN images i"
            f" ON i.sha256 = r.image_sha256 WHERE r.turn_id IN ({marks})",
            list(turn_ids)).fetchall()
        return {row[0]: TurnRegion(row[0], bytes(row[1]), row[2], row[3],
                                   ImageRef(*row[4:9]) if row[4] else None)
                for row in rows}

    def get_turn(self, turn_id: int) -> Turn | None:
        row = self.db.execute("SELECT * FROM turns WHERE id = ?", [turn_id]).fetchone()
        return self._turn(row) if row else None

    def turns_of(self, thread_id: int) -> list[Turn]:
        rows = self.db.execute(
            "SELECT * FROM turns WHERE thread_id = ? ORDER BY id", [thread_id]
        ).fetchall()
        return [self._turn(r) for r in rows]

    def path(self, turn_id: int | None, *, limit: int | None = None) -> list[Turn]:
        """Root → ``turn_id`` in one recursive query (no need to load the whole tree);
        with ``limit``, only the newest ``limit`` turns of it (oldest first)."""
        if turn_id is None:
            return []
        depth = limit if limit is not None else -1
        rows = self.db.execute(
            "WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL"
            " SELECT t.parent_id, up.depth + 1 FROM turns t JOIN up ON t.id = up.id"
            " WHERE t.parent_id IS NOT NULL AND (? < 0 OR up.depth + 1 < ?))"
            " SELECT turns.* FROM up JOIN turns ON turns.id = up.id ORDER BY up.depth DESC",
            [turn_id, depth, depth],
        ).fetchall()
        return [self._turn(r) for r in rows]

    def failed_children(self, parent_id: int | None, thread_id: int) -> list[Turn]:
        """Failed user turns right after ``parent_id`` (newest first): a retry reuses them."""
        rows = self.db.execute(
            "SELECT * FROM turns WHERE thread_id = ? AND status = ? AND role = 'user'"
            " AND parent_id IS ? ORDER BY id DESC",
            [thread_id, TurnStatus.FAILED.value, parent_id],
        ).fetchall()
        return [self._turn(r) for r in rows]

    def undelivered(self, thread_id: int) -> list[Turn]:
        rows = self.db.execute(
            "SELECT * FROM turns WHERE thread_id = ? AND status = ? ORDER BY id",
            [thread_id, TurnStatus.UNDELIVERED.value],
        ).fetchall()
        return [self._turn(r) for r in rows]

    def mark_delivered(self, turn: Turn, *, chat: ChatKey, message_ids: Sequence[str],
                       move_head: bool, done_event: int | None = None) -> None:
        with self.db.atomic():
            self.db.execute("UPDATE turns SET status = ? WHERE id = ?",
                            [TurnStatus.OK.value, turn.id])
            for message_id in message_ids:
                self._link(chat, message_id, turn)
            if move_head:
                self.db.execute("UPDATE threads SET head_turn_id = ? WHERE id = ?",
                                [turn.id, turn.thread_id])
            if done_event is not None:
                self._finish([done_event], InboxStatus.DONE, None)

    # ------------------------------------------------------------------ images
    def _put_image(self, image: NewImage) -> ImageRef:
        if self.blobs is None:
            sha = hashlib.sha256(image.data).hexdigest()
            self.db.execute(
                "INSERT OR IGNORE INTO images (sha256, mime_type, width, height, size, data,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [sha, image.mime_type, image.width, image.height, len(image.data),
                 image.data, time.time()],
            )
            return ImageRef(sha, image.mime_type, image.width, image.height, len(image.data))
        sha = self.blobs.put(image.data)
        ref = ImageRef(sha, image.mime_type, image.width, image.height, len(image.data))
        return self._adopt_image(ref)

    def _adopt_image(self, ref: ImageRef) -> ImageRef:
        """A row for an image whose file is already written (see SqliteStore.add_turn);
        an image already stored keeps its row."""
        if self.blobs is not None and self.blobs.exists(ref.sha256):
            self.db.execute(
                "INSERT OR IGNORE INTO images (sha256, mime_type, width, height, size, data,"
                " created_at, location) VALUES (?, ?, ?, ?, ?, x'', ?, 'file')",
                [ref.sha256, ref.mime_type, ref.width, ref.height, ref.size, time.time()],
            )
        return ref

    def image_bytes(self, sha256: str) -> bytes:
        row = self.db.execute("SELECT data, location FROM images WHERE sha256 = ?",
                              [sha256]).fetchone()
        if row is None:
            raise KeyError(sha256)
        if row[1] == "file" and self.blobs is not None:
            return self.blobs.get(sha256)
        return bytes(row[0])

    def image_is_stored(self, sha256: str) -> bool:
        row = self.db.execute("SELECT 1 FROM images WHERE sha256 = ?", [sha256]).fetchone()
        return row is not None

    def sweep_image_files(self, *, older_than: float) -> int:
        """Remove image files no row names (see BlobFiles.sweep)."""
        if self.blobs is None:
            return 0
        return self.blobs.sweep(self.image_is_stored, older_than=older_than)

    def missing_images(self, sha256s: Collection[str]) -> set[str]:
        wanted = sorted(set(sha256s))
        present: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self.db.execute(
                f"SELECT sha256 FROM images WHERE sha256 IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            present.update(row[0] for row in rows)
        return set(wanted) - present

    # ------------------------------------------------------------------ privacy, retention
    def _authored_turns(self, platform: str, user_id: str, chat_id: str | None) -> list[Turn]:
        """The user turns ``user_id`` sent that still hold something of theirs."""
        sql = ("SELECT turns.* FROM turns JOIN threads ON threads.id = turns.thread_id"
               " WHERE turns.role = 'user' AND turns.author_id = ? AND threads.platform = ?")
        args = [user_id, platform]
        if chat_id is not None:
            sql += " AND threads.chat_id = ?"
            args.append(chat_id)
        turns = [self._turn(row) for row in self.db.execute(sql + " ORDER BY turns.id", args)]
        return [t for t in turns if t.author_name or t.parts != _FORGOTTEN_PARTS]

    def authored_summary(self, platform: str, user_id: str, *, chat_id: str | None
                         ) -> AuthoredSummary:
        turns = self._authored_turns(platform, user_id, chat_id)
        return AuthoredSummary(
            prompts=sum(1 for t in turns if t.text and t.text != REMOVED_BY_AUTHOR),
            images=sum(len(t.images) for t in turns),
            conversations=len({t.thread_id for t in turns}),
        )

    def forget_author(self, platform: str, user_id: str, *, chat_id: str | None,
                      handling: Sequence[int] = ()) -> ForgetReport:
        with self.db.atomic():
            turns = self._authored_turns(platform, user_id, chat_id)
            for turn in turns:
                self.db.execute("UPDATE turns SET parts = ?, author_name = '' WHERE id = ?",
                                [_dump_parts(_FORGOTTEN_PARTS), turn.id])
                self.db.execute("DELETE FROM turn_images WHERE turn_id = ?", [turn.id])
                self.db.execute("DELETE FROM turn_regions WHERE turn_id = ?", [turn.id])
            events = self._scrub_events(platform, user_id, chat_id, handling)
            files, erased, _ = self._drop_unused_images()
        self._delete_files(files)
        # secure_delete zeroed what was deleted in the file; the WAL still holds the pages
        # as they were written, so it is copied in and cut to nothing
        self._truncate_wal()
        return ForgetReport(turns=len(turns), images_erased=erased, events_scrubbed=events)

    def _scrub_events(self, platform: str, user_id: str, chat_id: str | None,
                      handling: Sequence[int]) -> int:
        """Rewrite the inbox records :func:`storage.records.forgotten_events` names."""
        sql = (f"SELECT id, event, status NOT IN {_UNFINISHED_SQL} FROM inbox"
               " WHERE platform = ?")
        args = [platform]
        if chat_id is not None:
            sql += " AND chat_id = ?"
            args.append(chat_id)
        rows = [(row[0], row[1], bool(row[2])) for row in self.db.execute(sql, args)]
        changed = forgotten_events(rows, user_id, handling=handling)
        for entry_id, record in changed.items():
            self.db.execute("UPDATE inbox SET event = ? WHERE id = ?", [record, entry_id])
        return len(changed)

    def purge_idle_images(self, *, idle_before: float) -> PurgeReport:
        with self.db.atomic():
            idle = [row[0] for row in self.db.execute(
                "SELECT t.id FROM threads t WHERE EXISTS (SELECT 1 FROM turn_images ti"
                " JOIN turns u ON u.id = ti.turn_id WHERE u.thread_id = t.id)"
                " AND COALESCE((SELECT MAX(created_at) FROM turns WHERE thread_id = t.id),"
                " t.created_at) < ?",
                [idle_before],
            ).fetchall()]
            expired = 0
            for start in range(0, len(idle), _CHUNK):
                chunk = idle[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                expired += self.db.execute(
                    "UPDATE turns SET status = ?, error = 'expired' WHERE status = ?"
                    f" AND thread_id IN ({marks})",
                    [TurnStatus.FAILED.value, TurnStatus.UNDELIVERED.value, *chunk],
                ).rowcount
                self.db.execute(
                    "DELETE FROM turn_images WHERE turn_id IN"
                    f" (SELECT id FROM turns WHERE thread_id IN ({marks}))",
                    chunk,
                )
            files, erased, size = self._drop_unused_images()
        self._delete_files(files)
        reclaimed = self._reclaim() if erased else 0
        return PurgeReport(threads=len(idle), images_erased=erased, bytes_erased=size,
                           answers_expired=expired, bytes_reclaimed=reclaimed)

    def _truncate_wal(self) -> None:
        """Copy the WAL into the file and cut it to nothing: the WAL still holds every
        page as it was written (the deleted pictures too) until it is overwritten."""
        if self.filename == ":memory:":
            return
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("the SQLite WAL of %s could not be emptied (a reader was busy); "
                        "removed data stays in it until the next checkpoint", self.filename)

    def _reclaim(self) -> int:
        """Shrink the file once enough of it is free; the bytes it shrank by."""
        if self.filename == ":memory:":
            return 0
        self._truncate_wal()
        before = os.path.getsize(self.filename)
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        if not pages or free / pages < _COMPACT_FREE_SHARE:
            return 0
        self.db.execute("VACUUM")
        self._truncate_wal()  # VACUUM writes the whole new file through the WAL
        return max(0, before - os.path.getsize(self.filename))

    # ------------------------------------------------------------------ message links
    def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None:
        with self.db.atomic():
            self._link(chat, message_id, turn)

    def _link(self, chat: ChatKey, message_id: str, turn: Turn) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO message_links (platform, chat_id, message_id, turn_id,"
            " thread_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [chat.platform, chat.chat_id, message_id, turn.id, turn.thread_id, time.time()],
        )

    def linked_turn(self, chat: ChatKey, message_id: str) -> Turn | None:
        row = self.db.execute(
            "SELECT turns.* FROM message_links l JOIN turns ON turns.id = l.turn_id"
            " WHERE l.platform = ? AND l.chat_id = ? AND l.message_id = ?",
            [chat.platform, chat.chat_id, message_id],
        ).fetchone()
        return self._turn(row) if row else None

    # ------------------------------------------------------------------ usage
    def record_usage(
        self,
        *,
        chat: ChatKey,
        user_id: str,
        thread_id: int | None,
        model: str,
        ok: bool,
        images: int = 0,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
        request_bytes: int = 0,
        cost_micros: int = 0,
        latency_ms: int | None = None,
        failure: FailureKind | None = None,
        at: float | None = None,
        event_id: int | None = None,
        turn_id: int | None = None,
    ) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO usage (platform, chat_id, user_id, thread_id, model, ok, images,"
                " prompt_tokens, output_tokens, request_bytes, created_at, cost_micros,"
                " latency_ms, failure, turn_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [chat.platform, chat.chat_id, user_id, thread_id, model, int(ok), images,
                 prompt_tokens, output_tokens, request_bytes,
                 time.time() if at is None else at, cost_micros, latency_ms,
                 None if ok or failure is None else failure.value, turn_id],
            )
            if event_id is not None:
                self.db.execute(
                    "DELETE FROM spend_reservations WHERE id = (SELECT MIN(id) FROM"
                    " spend_reservations WHERE event_id = ?)", [event_id],
                )

    def turn_costs(self, thread_id: int) -> dict[int, int]:
        rows = self.db.execute(
            "SELECT turn_id, SUM(cost_micros) FROM usage WHERE thread_id = ?"
            " AND turn_id IS NOT NULL GROUP BY turn_id", [thread_id]).fetchall()
        return {int(turn_id): int(cost) for turn_id, cost in rows}

    def usage(self, *, platform: str, chat_id: str | None = None,
              user_id: str | None = None, since: float | None = None) -> UsageSummary:
        where: list[str] = ["platform = ?"]
        args: list[Any] = [platform]
        if chat_id is not None:
            where.append("chat_id = ?")
            args.append(chat_id)
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(1 - ok), 0), COALESCE(SUM(images), 0),"
            " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            f" COALESCE(SUM(cost_micros), 0) FROM usage WHERE {' AND '.join(where)}",
            args,
        ).fetchone()
        return UsageSummary(*(int(v) for v in row))

    def call_report(self, *, since: float, top: int = 5) -> CallReport:
        calls, cost = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost_micros), 0) FROM usage WHERE created_at >= ?",
            [since],
        ).fetchone()
        failures = failure_counts(self.db.execute(
            "SELECT COALESCE(failure, 'unknown'), COUNT(*) FROM usage"
            " WHERE created_at >= ? AND ok = 0 GROUP BY 1 ORDER BY 2 DESC, 1", [since],
        ).fetchall())
        timed = int(self.db.execute(
            "SELECT COUNT(*) FROM usage WHERE created_at >= ? AND latency_ms IS NOT NULL",
            [since],
        ).fetchone()[0])

        def percentile(p: int) -> int | None:
            if timed == 0:
                return None
            rank = math.ceil(p / 100 * timed)
            row = self.db.execute(
                "SELECT latency_ms FROM usage WHERE created_at >= ? AND latency_ms IS NOT NULL"
                " ORDER BY latency_ms LIMIT 1 OFFSET ?", [since, rank - 1],
            ).fetchone()
            return int(row[0])

        busiest = tuple(
            ChatCalls(platform, chat_id, int(n), int(spent))
            for platform, chat_id, n, spent in self.db.execute(
                "SELECT platform, chat_id, COUNT(*), COALESCE(SUM(cost_micros), 0) FROM usage"
                " WHERE created_at >= ? GROUP BY platform, chat_id"
                " ORDER BY 3 DESC, 4 DESC, platform, chat_id LIMIT ?", [since, top],
            ).fetchall()
        )
        return CallReport(int(calls), failures, int(cost), percentile(50), percentile(95),
                          busiest)

    # ------------------------------------------------------------------ budgets
    def reserve_spend(self, *, chat: ChatKey, user_id: str, event_id: int | None,
                      amount_micros: int, calls: int, limits: Sequence[SpendLimit],
                      now: float, expires_at: float) -> SpendLimit | None:
        with self.db.atomic():  # one writer thread: the check and the insert are one step
            for limit in limits:
                where, args = _scope(limit.scope, chat, user_id)
                spent = int(self.db.execute(
                    f"SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE {where}"
                    " AND created_at >= ?", [*args, limit.since],
                ).fetchone()[0])
                held = int(self.db.execute(
                    "SELECT COALESCE(SUM(amount_micros), 0) FROM spend_reservations"
                    f" WHERE {where} AND expires_at > ?", [*args, now],
                ).fetchone()[0])
                if spent + held + amount_micros * calls > limit.limit_micros:
                    return limit
            for _ in range(calls):
                self.db.execute(
                    "INSERT INTO spend_reservations (platform, chat_id, user_id, event_id,"
                    " amount_micros, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [chat.platform, chat.chat_id, user_id, event_id, amount_micros, now,
                     expires_at],
                )
            self.db.execute("DELETE FROM spend_reservations WHERE expires_at <= ?", [now])
        return None

    def release_spend(self, event_id: int) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM spend_reservations WHERE event_id = ?", [event_id])

    # ------------------------------------------------------------------ chat settings
    def chat_settings(self, chat: ChatKey) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT name, value FROM chat_settings WHERE platform = ? AND chat_id = ?",
            [chat.platform, chat.chat_id],
        ).fetchall()
        return {str(name): str(value) for name, value in rows}

    def set_chat_setting(self, chat: ChatKey, name: str, value: str | None, *,
                         changed_by: str) -> None:
        with self.db.atomic():
            if value is None:
                self.db.execute(
                    "DELETE FROM chat_settings WHERE platform = ? AND chat_id = ? AND name = ?",
                    [chat.platform, chat.chat_id, name],
                )
                return
            self.db.execute(
                "INSERT INTO chat_settings (platform, chat_id, name, value, changed_by,"
                " changed_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, name)"
                " DO UPDATE SET value = excluded.value, changed_by = excluded.changed_by,"
                " changed_at = excluded.changed_at",
                [chat.platform, chat.chat_id, name, value, changed_by, time.time()],
            )

    def stats(self) -> StoreStats:
        """One statement of scalar subqueries, as PostgreSQL does it."""
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM threads),"
            " (SELECT COUNT(*) FROM turns),"
            " (SELECT COUNT(*) FROM turns WHERE role = 'model'),"
            " (SELECT COUNT(*) FROM turns WHERE status = 'failed'),"
            " (SELECT COUNT(*) FROM turns WHERE status = 'undelivered'),"
            " (SELECT COUNT(*) FROM images),"
            " (SELECT COALESCE(SUM(size), 0) FROM images),"
            " (SELECT COUNT(DISTINCT platform || ':' || user_id) FROM usage),"
            " (SELECT COUNT(*) FROM usage),"
            " (SELECT COUNT(*) FROM usage WHERE ok = 0),"
            f" (SELECT COUNT(*) FROM inbox WHERE status IN {_UNFINISHED_SQL})"
        ).fetchone()
        return StoreStats(*(int(v) for v in row))

    def inbox_backlog(self) -> int:
        return int(self.db.execute(
            f"SELECT COUNT(*) FROM inbox WHERE status IN {_UNFINISHED_SQL}").fetchone()[0])

    def inbox_oldest_stuck(self) -> float | None:
        row = self.db.execute(_OLDEST_STUCK).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # ------------------------------------------------------------------ inbox
    def inbox_add(self, event: Incoming, *, lane: str) -> tuple[InboxEntry, bool]:
        record = event_json(event)
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO inbox (platform, chat_id, message_id, lane, group_id,"
                " event, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [event.chat.platform, event.chat.chat_id, event.message_id, lane,
                 event.group_id, record, time.time()],
            )
            created = cursor.rowcount == 1
            row = self.db.execute(
                "SELECT * FROM inbox WHERE platform = ? AND chat_id = ? AND message_id = ?",
                [event.chat.platform, event.chat.chat_id, event.message_id],
            ).fetchone()
        return _entry(row), created

    def inbox_claim(self, owner: str, *, limit: int, lease_seconds: float,
                    platforms: Sequence[str]) -> list[InboxEntry]:
        now = time.time()
        marks = ",".join("?" * len(platforms))
        with self.db.atomic():
            rows = self.db.execute(
                "SELECT * FROM inbox WHERE id IN (SELECT MIN(id) FROM inbox"
                f" WHERE status IN {_UNFINISHED_SQL} GROUP BY lane)"
                f" AND (status = 'received' OR lease_until < ?) AND platform IN ({marks})"
                " ORDER BY id LIMIT ?",
                [now, *platforms, limit],
            ).fetchall()
            entries: list[InboxEntry] = []
            for row in rows:
                try:
                    entries.append(_entry(row, status=InboxStatus.PROCESSING, attempts_added=1))
                except Exception as exc:  # a record no code can read must not block its lane
                    log.error("inbox entry %s is unreadable (%s); marked failed", row[0], exc)
                    self._finish([row[0]], InboxStatus.FAILED, f"unreadable record: {exc}")
            ids = [e.id for e in entries]
            if ids:
                self.db.execute(
                    "UPDATE inbox SET status = 'processing', owner = ?, lease_until = ?,"
                    f" attempts = attempts + 1 WHERE id IN ({','.join('?' * len(ids))})",
                    [owner, now + lease_seconds, *ids],
                )
        return entries

    def inbox_renew(self, owner: str, *, lease_seconds: float) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE inbox SET lease_until = ? WHERE owner = ? AND status = 'processing'",
                [time.time() + lease_seconds, owner],
            )

    def inbox_release(self, owner: str, entry_ids: Sequence[int] | None = None) -> None:
        only = "" if entry_ids is None else f" AND id IN ({','.join('?' * len(entry_ids))})"
        with self.db.atomic():
            self.db.execute(
                "UPDATE inbox SET lease_until = 0, owner = NULL"
                f" WHERE owner = ? AND status = 'processing'{only}",
                [owner, *(entry_ids or ())],
            )

    def inbox_join_group(self, entry: InboxEntry, owner: str, *, lease_seconds: float
                         ) -> list[InboxEntry]:
        if entry.event.group_id is None:
            return [entry]
        with self.db.atomic():
            rows = self.db.execute(
                "SELECT * FROM inbox WHERE lane = ? AND group_id = ?"
                f" AND status IN {_UNFINISHED_SQL} AND (id = ? OR owner IS NULL OR owner = ?"
                " OR lease_until < ?) ORDER BY id",
                [entry.lane, entry.event.group_id, entry.id, owner, time.time()],
            ).fetchall()
            others = [r[0] for r in rows if r[0] != entry.id]
            if others:
                self.db.execute(
                    "UPDATE inbox SET status = 'processing', owner = ?, lease_until = ?"
                    f" WHERE id IN ({','.join('?' * len(others))})",
                    [owner, time.time() + lease_seconds, *others],
                )
        return [entry if r[0] == entry.id else _entry(r, status=InboxStatus.PROCESSING)
                for r in rows]

    def inbox_group_latest(self, lane: str, group_id: str) -> float:
        row = self.db.execute(
            "SELECT MAX(received_at) FROM inbox WHERE lane = ? AND group_id = ?",
            [lane, group_id],
        ).fetchone()
        return float(row[0] or 0.0)

    def inbox_mark_call_started(self, entry_id: int, owner: str) -> bool:
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE inbox SET call_started = 1"
                " WHERE id = ? AND owner = ? AND status = 'processing'",
                [entry_id, owner],
            )
            return cursor.rowcount > 0

    def inbox_linked_turns(self, entry_id: int) -> list[LinkedTurn]:
        rows = self.db.execute(
            "SELECT turn_id, call_started FROM inbox_turns WHERE entry_id = ?"
            " ORDER BY position",
            [entry_id],
        ).fetchall()
        return [LinkedTurn(turn_id, bool(started)) for turn_id, started in rows]

    def inbox_mark_linked_call_started(self, entry_id: int, turn_id: int, owner: str
                                       ) -> bool:
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE inbox_turns SET call_started = 1 WHERE entry_id = ? AND turn_id = ?"
                " AND EXISTS (SELECT 1 FROM inbox WHERE id = ? AND owner = ?"
                " AND status = 'processing')",
                [entry_id, turn_id, entry_id, owner],
            )
            return cursor.rowcount > 0

    def inbox_finish(self, entry_ids: Sequence[int], *, status: InboxStatus,
                     error: str | None = None) -> None:
        with self.db.atomic():
            self._finish(entry_ids, status, error)

    def _finish(self, entry_ids: Sequence[int], status: InboxStatus, error: str | None
                ) -> None:
        if not entry_ids:
            return
        self.db.execute(
            "UPDATE inbox SET status = ?, error = ?, finished_at = ?, owner = NULL,"
            f" lease_until = 0 WHERE id IN ({','.join('?' * len(entry_ids))})",
            [status.value, error, time.time(), *entry_ids],
        )

    def inbox_waiting_before(self, lane: str, entry_id: int) -> int:
        row = self.db.execute(
            f"SELECT COUNT(*) FROM inbox WHERE lane = ? AND id < ? AND status IN"
            f" {_UNFINISHED_SQL}",
            [lane, entry_id],
        ).fetchone()
        return int(row[0])

    def inbox_lane_active(self, lane: str) -> bool:
        row = self.db.execute(
            f"SELECT 1 FROM inbox WHERE lane = ? AND status IN {_UNFINISHED_SQL} LIMIT 1",
            [lane],
        ).fetchone()
        return row is not None

    def inbox_get(self, entry_id: int) -> InboxEntry | None:
        row = self.db.execute("SELECT * FROM inbox WHERE id = ?", [entry_id]).fetchone()
        return _entry(row) if row else None

    def inbox_prune(self, *, older_than: float) -> int:
        with self.db.atomic():
            cursor = self.db.execute(
                "DELETE FROM inbox WHERE finished_at IS NOT NULL AND received_at < ?",
                [older_than],
            )
        return int(cursor.rowcount)


# ---------------------------------------------------------------------- rows
def _scope(scope: SpendScope, chat: ChatKey, user_id: str) -> tuple[str, list[Any]]:
    """The WHERE clause (for ``usage`` and ``spend_reservations``) of a spend scope."""
    if scope is SpendScope.USER:
        return "platform = ? AND user_id = ?", [chat.platform, user_id]
    if scope is SpendScope.CHAT:
        return "platform = ? AND chat_id = ?", [chat.platform, chat.chat_id]
    return "1 = 1", []


_FORGOTTEN_PARTS = (StoredPart(text=REMOVED_BY_AUTHOR),)


def _exclusive_lock(path: Path) -> IO[bytes]:
    """Hold ``path`` locked for as long as the store is open (released by the OS on exit,
    so a killed process never leaves a stale lock behind)."""
    handle = open(path, "a+b")  # noqa: SIM115 - kept open on purpose: it is the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DatabaseInUse(
            f"another chatbrush process is using {path.with_suffix('')}; run one process per "
            "SQLite file, or use PostgreSQL (DATABASE_URL) for several"
        ) from None
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return handle


# ---------------------------------------------------------------------- the async port
class SqliteStore:
    """The :class:`bot.core.store.Store` port over SQLite, every call on one worker thread."""

    def __init__(self, database: SqliteDatabase, executor: ThreadPoolExecutor) -> None:
        self.sync = database
        self._executor = executor

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        """Open (and migrate) the database on the worker thread that will own it."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatbrush-db")
        try:
            database = await asyncio.get_running_loop().run_in_executor(
                executor, SqliteDatabase, path
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        store = cls(database, executor)
        # files a crash left without their row (written, never committed); an hour's
        # margin keeps the files of turns being written by… nobody else: one process
        await store.run(database.sweep_image_files, older_than=time.time() - 3600)
        return store

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        await self.run(self.sync.close)
        self._executor.shutdown(wait=True)

    # -- threads
    async def create_thread(self, chat: ChatKey, *, lane: str, external_key: str | None = None,
                            created_by: str = "") -> Thread:
        return await self.run(self.sync.create_thread, chat, lane=lane,
                              external_key=external_key, created_by=created_by)

    async def get_thread(self, thread_id: int) -> Thread | None:
        return await self.run(self.sync.get_thread, thread_id)

    async def thread_by_key(self, chat: ChatKey, external_key: str) -> Thread | None:
        return await self.run(self.sync.thread_by_key, chat, external_key)

    async def current_thread(self, chat: ChatKey) -> Thread | None:
        return await self.run(self.sync.current_thread, chat)

    async def set_current_thread(self, chat: ChatKey, thread_id: int | None) -> None:
        await self.run(self.sync.set_current_thread, chat, thread_id)

    async def set_head(self, thread_id: int, turn_id: int | None, *,
                       done_event: int | None = None) -> None:
        await self.run(self.sync.set_head, thread_id, turn_id, done_event=done_event)

    async def delete_thread(self, thread_id: int) -> None:
        await self.run(self.sync.delete_thread, thread_id)

    # -- turns
    async def add_turn(
        self,
        thread_id: int,
        *,
        parent_id: int | None,
        role: Role,
        parts: Sequence[NewPart],
        author_id: str = "",
        author_name: str = "",
        status: TurnStatus = TurnStatus.OK,
        error: str | None = None,
        move_head: bool = True,
        event_id: int | None = None,
    ) -> Turn:
        staged = await self._stage_images(parts)
        return await self.run(
            self.sync.add_turn, thread_id, parent_id=parent_id, role=role, parts=staged,
            author_id=author_id, author_name=author_name, status=status, error=error,
            move_head=move_head, event_id=event_id,
        )

    async def _stage_images(self, parts: Sequence[NewPart]) -> list[NewPart]:
        """Write new images' files beforehand, in parallel and off the database thread
        (each is fsynced), so the commit itself only writes small rows."""
        blobs = self.sync.blobs
        if blobs is None or not any(isinstance(p.image, NewImage) for p in parts):
            return list(parts)

        async def stage(part: NewPart) -> NewPart:
            image = part.image
            if not isinstance(image, NewImage):
                return part
            sha = await asyncio.to_thread(blobs.put, image.data)
            ref = ImageRef(sha, image.mime_type, image.width, image.height, len(image.data))
            return NewPart(part.text, ref, part.thought, part.thought_signature, part.extra)

        return list(await asyncio.gather(*(stage(p) for p in parts)))

    async def add_linked_turns(self, thread_id: int, *, parent_id: int | None,
                               turns: Sequence[Sequence[NewPart]], author_id: str,
                               author_name: str, event_id: int) -> list[Turn]:
        staged = [await self._stage_images(parts) for parts in turns]
        return await self.run(self.sync.add_linked_turns, thread_id, parent_id=parent_id,
                              turns=staged, author_id=author_id, author_name=author_name,
                              event_id=event_id)

    async def mark_failed(self, turn_id: int, error: str) -> None:
        await self.run(self.sync.mark_failed, turn_id, error)

    async def set_turn_region(self, turn_id: int, region: NewRegion) -> None:
        staged = await self._stage_images([NewPart(image=region.image)])
        await self.run(self.sync.set_turn_region, turn_id, region, staged[0].image)

    async def turn_regions(self, turn_ids: Sequence[int]) -> dict[int, TurnRegion]:
        return await self.run(self.sync.turn_regions, list(turn_ids))

    async def get_turn(self, turn_id: int) -> Turn | None:
        return await self.run(self.sync.get_turn, turn_id)

    async def turns_of(self, thread_id: int) -> list[Turn]:
        return await self.run(self.sync.turns_of, thread_id)

    async def path(self, turn_id: int | None, *, limit: int | None = None) -> list[Turn]:
        return await self.run(self.sync.path, turn_id, limit=limit)

    async def failed_children(self, parent_id: int | None, thread_id: int) -> list[Turn]:
        return await self.run(self.sync.failed_children, parent_id, thread_id)

    async def undelivered(self, thread_id: int) -> list[Turn]:
        return await self.run(self.sync.undelivered, thread_id)

    async def mark_delivered(self, turn: Turn, *, chat: ChatKey, message_ids: Sequence[str],
                             move_head: bool, done_event: int | None = None) -> None:
        await self.run(self.sync.mark_delivered, turn, chat=chat, message_ids=message_ids,
                       move_head=move_head, done_event=done_event)

    async def image_bytes(self, sha256: str) -> bytes:
        blobs = self.sync.blobs
        if blobs is not None:
            try:  # content-addressed: the file, if there, is the image (no database hop)
                return await asyncio.to_thread(blobs.get, sha256)
            except KeyError:
                pass
        return await self.run(self.sync.image_bytes, sha256)

    async def missing_images(self, sha256s: Collection[str]) -> set[str]:
        return await self.run(self.sync.missing_images, sha256s)

    # -- privacy and retention
    async def authored_summary(self, platform: str, user_id: str, *,
                               chat_id: str | None) -> AuthoredSummary:
        return await self.run(self.sync.authored_summary, platform, user_id, chat_id=chat_id)

    async def forget_author(self, platform: str, user_id: str, *, chat_id: str | None,
                            handling: Sequence[int] = ()) -> ForgetReport:
        return await self.run(self.sync.forget_author, platform, user_id, chat_id=chat_id,
                              handling=handling)

    async def purge_idle_images(self, *, idle_before: float) -> PurgeReport:
        return await self.run(self.sync.purge_idle_images, idle_before=idle_before)

    # -- links
    async def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None:
        await self.run(self.sync.link_message, chat, message_id, turn)

    async def linked_turn(self, chat: ChatKey, message_id: str) -> Turn | None:
        return await self.run(self.sync.linked_turn, chat, message_id)

    # -- usage
    async def record_usage(self, *, chat: ChatKey, user_id: str, thread_id: int | None,
                           model: str, ok: bool, images: int = 0, prompt_tokens: int = 0,
                           output_tokens: int = 0, request_bytes: int = 0,
                           cost_micros: int = 0, latency_ms: int | None = None,
                           failure: FailureKind | None = None, at: float | None = None,
                           event_id: int | None = None, turn_id: int | None = None) -> None:
        await self.run(self.sync.record_usage, chat=chat, user_id=user_id,
                       thread_id=thread_id, model=model, ok=ok, images=images,
                       prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                       request_bytes=request_bytes, cost_micros=cost_micros,
                       latency_ms=latency_ms, failure=failure, at=at, event_id=event_id,
                       turn_id=turn_id)

    async def turn_costs(self, thread_id: int) -> dict[int, int]:
        return await self.run(self.sync.turn_costs, thread_id)

    async def usage(self, *, platform: str, chat_id: str | None = None,
                    user_id: str | None = None, since: float | None = None) -> UsageSummary:
        return await self.run(self.sync.usage, platform=platform, chat_id=chat_id,
                              user_id=user_id, since=since)

    async def call_report(self, *, since: float, top: int = 5) -> CallReport:
        return await self.run(self.sync.call_report, since=since, top=top)

    # -- budgets
    async def reserve_spend(self, *, chat: ChatKey, user_id: str, event_id: int | None,
                            amount_micros: int, calls: int, limits: Sequence[SpendLimit],
                            now: float, expires_at: float) -> SpendLimit | None:
        return await self.run(self.sync.reserve_spend, chat=chat, user_id=user_id,
                              event_id=event_id, amount_micros=amount_micros, calls=calls,
                              limits=limits, now=now, expires_at=expires_at)

    async def release_spend(self, event_id: int) -> None:
        await self.run(self.sync.release_spend, event_id)

    # -- per-chat settings
    async def chat_settings(self, chat: ChatKey) -> dict[str, str]:
        return await self.run(self.sync.chat_settings, chat)

    async def set_chat_setting(self, chat: ChatKey, name: str, value: str | None, *,
                               changed_by: str) -> None:
        await self.run(self.sync.set_chat_setting, chat, name, value, changed_by=changed_by)

    async def stats(self) -> StoreStats:
        return await self.run(self.sync.stats)

    # -- inbox
    async def inbox_add(self, event: Incoming, *, lane: str) -> tuple[InboxEntry, bool]:
        return await self.run(self.sync.inbox_add, event, lane=lane)

    async def inbox_claim(self, owner: str, *, limit: int, lease_seconds: float,
                          platforms: Sequence[str]) -> list[InboxEntry]:
        return await self.run(self.sync.inbox_claim, owner, limit=limit,
                              lease_seconds=lease_seconds, platforms=platforms)

    async def inbox_renew(self, owner: str, *, lease_seconds: float) -> None:
        await self.run(self.sync.inbox_renew, owner, lease_seconds=lease_seconds)

    async def inbox_release(self, owner: str, entry_ids: Sequence[int] | None = None) -> None:
        await self.run(self.sync.inbox_release, owner, entry_ids)

    async def inbox_join_group(self, entry: InboxEntry, owner: str, *,
                               lease_seconds: float) -> list[InboxEntry]:
        return await self.run(self.sync.inbox_join_group, entry, owner,
                              lease_seconds=lease_seconds)

    async def inbox_group_latest(self, lane: str, group_id: str) -> float:
        return await self.run(self.sync.inbox_group_latest, lane, group_id)

    async def inbox_mark_call_started(self, entry_id: int, *, owner: str) -> bool:
        return await self.run(self.sync.inbox_mark_call_started, entry_id, owner)

    async def inbox_linked_turns(self, entry_id: int) -> list[LinkedTurn]:
        return await self.run(self.sync.inbox_linked_turns, entry_id)

    async def inbox_mark_linked_call_started(self, entry_id: int, turn_id: int, *,
                                             owner: str) -> bool:
        return await self.run(self.sync.inbox_mark_linked_call_started, entry_id, turn_id,
                              owner)

    async def inbox_finish(self, entry_ids: Sequence[int], *, status: InboxStatus,
                           error: str | None = None) -> None:
        await self.run(self.sync.inbox_finish, entry_ids, status=status, error=error)

    async def inbox_waiting_before(self, lane: str, entry_id: int) -> int:
        return await self.run(self.sync.inbox_waiting_before, lane, entry_id)

    async def inbox_backlog(self) -> int:
        return await self.run(self.sync.inbox_backlog)

    async def inbox_oldest_stuck(self) -> float | None:
        return await self.run(self.sync.inbox_oldest_stuck)

    async def inbox_lane_active(self, lane: str) -> bool:
        return await self.run(self.sync.inbox_lane_active, lane)

    async def inbox_get(self, entry_id: int) -> InboxEntry | None:
        return await self.run(self.sync.inbox_get, entry_id)

    async def inbox_prune(self, *, older_than: float) -> int:
        return await self.run(self.sync.inbox_prune, older_than=older_than)

    async def wait_for_inbox(self, seconds: float) -> None:
        """No other process shares the file (the lock file sees to it): nothing to hear."""
        await asyncio.sleep(seconds)


async def open_store(url: str, settings: Settings | None = None) -> Store:
    """The ``chatbrush.stores`` entry point: ``sqlite:///path`` or a plain file path
    (typed as the port, so mypy checks that the store implements every part of it)."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return await SqliteStore.open(path)
