"""SQLite persistence for threads, turns, images, message links and usage (sqlite-utils).

One file holds everything so a bot survives restarts and can be backed up with ``cp``.
WAL mode lets readers (``/history``, ``/usage``) proceed while a turn is written; every
turn is written atomically together with its images and the thread's new head. Images
are stored once by SHA-256, however many turns refer to them. Calls are synchronous:
the engine runs them on one dedicated worker thread (:class:`AsyncStore`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlite_utils

from bot.events import ChatKey
from bot.threads import ImageRef, StoredPart, Thread, Turn, TurnStatus
from storage.migrations import MIGRATIONS

P = ParamSpec("P")
#: how many newly claimed delivery keys between two sweeps of old ones
PRUNE_EVERY = 500
R = TypeVar("R")


@dataclass(frozen=True)
class NewImage:
    """Bytes to store with a turn (already normalised by the caller)."""

    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class NewPart:
    text: str | None = None
    image: NewImage | ImageRef | None = None
    thought: bool = False
    thought_signature: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class UsageSummary:
    calls: int = 0
    failed: int = 0
    images: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0


class Store:
    """All persistent state. Not thread-safe by itself: use one thread (see AsyncStore)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.filename = str(path)
        if self.filename != ":memory:":
            Path(self.filename).expanduser().parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.filename, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if self.filename != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()
        self._claims = 0

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

    # ------------------------------------------------------------------ threads
    def create_thread(
        self, chat: ChatKey, *, external_key: str | None = None, created_by: str = ""
    ) -> Thread:
        now = time.time()
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO threads (platform, chat_id, topic_id, external_key, head_turn_id,"
                " created_at, created_by) VALUES (?, ?, ?, ?, NULL, ?, ?)",
                [chat.platform, chat.chat_id, chat.topic_id or "", external_key, now, created_by],
            )
        thread_id = cursor.lastrowid
        assert thread_id is not None
        return Thread(thread_id, chat, external_key, None, now, created_by)

    def get_thread(self, thread_id: int) -> Thread | None:
        row = self.db.execute("SELECT * FROM threads WHERE id = ?", [thread_id]).fetchone()
        return self._thread(row) if row else None

    def thread_by_key(self, chat: ChatKey, external_key: str) -> Thread | None:
        row = self.db.execute(
            "SELECT * FROM threads WHERE platform = ? AND chat_id = ? AND topic_id = ?"
            " AND external_key = ? ORDER BY id DESC LIMIT 1",
            [chat.platform, chat.chat_id, chat.topic_id or "", external_key],
        ).fetchone()
        return self._thread(row) if row else None

    def current_thread(self, chat: ChatKey) -> Thread | None:
        row = self.db.execute(
            "SELECT t.* FROM chat_state s JOIN threads t ON t.id = s.current_thread_id"
            " WHERE s.platform = ? AND s.chat_id = ? AND s.topic_id = ?",
            [chat.platform, chat.chat_id, chat.topic_id or ""],
        ).fetchone()
        return self._thread(row) if row else None

    def set_current_thread(self, chat: ChatKey, thread_id: int | None) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO chat_state (platform, chat_id, topic_id, current_thread_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (platform, chat_id, topic_id)"
                " DO UPDATE SET current_thread_id = excluded.current_thread_id",
                [chat.platform, chat.chat_id, chat.topic_id or "", thread_id],
            )

    def set_head(self, thread_id: int, turn_id: int | None) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE threads SET head_turn_id = ? WHERE id = ?", [turn_id, thread_id]
            )

    def delete_thread(self, thread_id: int) -> None:
        """Forget a thread: its turns and links go; images nobody else uses go too."""
        with self.db.atomic():
            self.db.execute("UPDATE chat_state SET current_thread_id = NULL"
                            " WHERE current_thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM message_links WHERE thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM turn_images WHERE turn_id IN"
                            " (SELECT id FROM turns WHERE thread_id = ?)", [thread_id])
            self.db.execute("UPDATE threads SET head_turn_id = NULL WHERE id = ?", [thread_id])
            self.db.execute("DELETE FROM turns WHERE thread_id = ?", [thread_id])
            self.db.execute("DELETE FROM threads WHERE id = ?", [thread_id])
            self.db.execute(
                "DELETE FROM images WHERE sha256 NOT IN (SELECT sha256 FROM turn_images)"
            )

    # ------------------------------------------------------------------ turns
    def add_turn(
        self,
        thread_id: int,
        *,
        parent_id: int | None,
        role: str,
        parts: Sequence[NewPart],
        author_id: str = "",
        author_name: str = "",
        status: TurnStatus = TurnStatus.OK,
        error: str | None = None,
        move_head: bool = True,
    ) -> Turn:
        """Write a turn, its images and (optionally) the new head in one transaction."""
        now = time.time()
        stored: list[StoredPart] = []
        with self.db.atomic():
            for part in parts:
                ref = (self._put_image(part.image) if isinstance(part.image, NewImage)
                       else part.image)
                stored.append(
                    StoredPart(part.text, ref, part.thought, part.thought_signature,
                               dict(part.extra or {}))
                )
            version = None
            if role == "model":
                version = 1 + int(self.db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM turns WHERE thread_id = ?",
                    [thread_id],
                ).fetchone()[0])
            cursor = self.db.execute(
                "INSERT INTO turns (thread_id, parent_id, role, status, author_id, author_name,"
                " parts, created_at, version, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [thread_id, parent_id, role, status.value, author_id, author_name,
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
            if move_head:
                self.db.execute(
                    "UPDATE threads SET head_turn_id = ? WHERE id = ?", [turn_id, thread_id]
                )
        return Turn(turn_id, thread_id, parent_id, role, status, author_id, author_name,
                    tuple(stored), now, version, error)

    def mark_failed(self, turn_id: int, error: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE turns SET status = ?, error = ? WHERE id = ?",
                [TurnStatus.FAILED.value, error, turn_id],
            )

    def get_turn(self, turn_id: int) -> Turn | None:
        row = self.db.execute("SELECT * FROM turns WHERE id = ?", [turn_id]).fetchone()
        return self._turn(row) if row else None

    def turns_of(self, thread_id: int) -> list[Turn]:
        rows = self.db.execute(
            "SELECT * FROM turns WHERE thread_id = ? ORDER BY id", [thread_id]
        ).fetchall()
        return [self._turn(r) for r in rows]

    def path(self, turn_id: int | None) -> list[Turn]:
        """Root → ``turn_id`` in one recursive query (no need to load the whole tree)."""
        if turn_id is None:
            return []
        rows = self.db.execute(
            "WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL"
            " SELECT t.parent_id, up.depth + 1 FROM turns t JOIN up ON t.id = up.id"
            " WHERE t.parent_id IS NOT NULL)"
            " SELECT turns.* FROM up JOIN turns ON turns.id = up.id ORDER BY up.depth DESC",
            [turn_id],
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

    # ------------------------------------------------------------------ images
    def _put_image(self, image: NewImage) -> ImageRef:
        sha = hashlib.sha256(image.data).hexdigest()
        self.db.execute(
            "INSERT OR IGNORE INTO images (sha256, mime_type, width, height, size, data,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [sha, image.mime_type, image.width, image.height, len(image.data), image.data,
             time.time()],
        )
        return ImageRef(sha, image.mime_type, image.width, image.height, len(image.data))

    def image_bytes(self, sha256: str) -> bytes:
        row = self.db.execute("SELECT data FROM images WHERE sha256 = ?", [sha256]).fetchone()
        if row is None:
            raise KeyError(sha256)
        return bytes(row[0])

    def image_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    # ------------------------------------------------------------------ message links
    def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None:
        with self.db.atomic():
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
    ) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO usage (platform, chat_id, user_id, thread_id, model, ok, images,"
                " prompt_tokens, output_tokens, request_bytes, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [chat.platform, chat.chat_id, user_id, thread_id, model, int(ok), images,
                 prompt_tokens, output_tokens, request_bytes, time.time()],
            )

    def usage(self, *, platform: str, chat_id: str | None = None,
              user_id: str | None = None) -> UsageSummary:
        where, args = ["platform = ?"], [platform]
        if chat_id is not None:
            where.append("chat_id = ?")
            args.append(chat_id)
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(1 - ok), 0), COALESCE(SUM(images), 0),"
            " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM usage"
            f" WHERE {' AND '.join(where)}",
            args,
        ).fetchone()
        return UsageSummary(*(int(v) for v in row))

    def stats(self) -> dict[str, int]:
        def count(sql: str) -> int:
            return int(self.db.execute(sql).fetchone()[0])

        return {
            "threads": count("SELECT COUNT(*) FROM threads"),
            "turns": count("SELECT COUNT(*) FROM turns"),
            "versions": count("SELECT COUNT(*) FROM turns WHERE role = 'model'"),
            "failed turns": count("SELECT COUNT(*) FROM turns WHERE status = 'failed'"),
            "stored images": count("SELECT COUNT(*) FROM images"),
            "image bytes": count("SELECT COALESCE(SUM(size), 0) FROM images"),
            "users": count("SELECT COUNT(DISTINCT platform || ':' || user_id) FROM usage"),
            "model calls": count("SELECT COUNT(*) FROM usage"),
            "failed calls": count("SELECT COUNT(*) FROM usage WHERE ok = 0"),
        }

    # ------------------------------------------------------------------ deliveries
    def claim_event(self, platform: str, event_key: str, *, keep_seconds: float = 7 * 86400
                    ) -> bool:
        """True the first time a delivery is seen; old keys are pruned as we go."""
        now = time.time()
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO seen_events (platform, event_key, seen_at)"
                " VALUES (?, ?, ?)",
                [platform, event_key, now],
            )
            claimed = cursor.rowcount == 1
            if claimed:
                self._claims += 1
                # Every PRUNE_EVERY new keys (and on the first), forget keys no platform
                # would still re-deliver, so the table stays small on a busy bot too.
                if self._claims % PRUNE_EVERY == 1:
                    self.db.execute("DELETE FROM seen_events WHERE seen_at < ?",
                                    [now - keep_seconds])
        return claimed

    # ------------------------------------------------------------------ rows
    def _thread(self, row: Sequence[Any]) -> Thread:
        (thread_id, platform, chat_id, topic_id, external_key, head, created_at,
         created_by) = row
        return Thread(thread_id, ChatKey(platform, chat_id, topic_id or None), external_key,
                      head, created_at, created_by)

    def _turn(self, row: Sequence[Any]) -> Turn:
        (turn_id, thread_id, parent_id, role, status, author_id, author_name, parts,
         created_at, version, error) = row
        return Turn(turn_id, thread_id, parent_id, role, TurnStatus(status), author_id,
                    author_name, _load_parts(parts), created_at, version, error)


def _dump_parts(parts: Sequence[StoredPart]) -> str:
    out = []
    for p in parts:
        item: dict[str, Any] = {}
        if p.text is not None:
            item["text"] = p.text
        if p.image is not None:
            item["image"] = {"sha256": p.image.sha256, "mimeType": p.image.mime_type,
                             "width": p.image.width, "height": p.image.height,
                             "size": p.image.size}
        if p.thought:
            item["thought"] = True
        if p.thought_signature is not None:
            item["thoughtSignature"] = p.thought_signature
        if p.extra:
            item["extra"] = p.extra
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def _load_parts(raw: str) -> tuple[StoredPart, ...]:
    parts = []
    for item in json.loads(raw):
        image = item.get("image")
        ref = (ImageRef(image["sha256"], image["mimeType"], image["width"], image["height"],
                        image["size"]) if image else None)
        parts.append(StoredPart(item.get("text"), ref, bool(item.get("thought")),
                                item.get("thoughtSignature"), item.get("extra") or {}))
    return tuple(parts)


class AsyncStore:
    """Runs every :class:`Store` call on one worker thread, off the event loop.

    A single worker keeps SQLite writes serialised (no "database is locked" between our
    own writers) while the event loop stays free for other chats.
    """

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self.sync = store
        self._executor = executor

    @classmethod
    async def open(cls, path: str | Path) -> AsyncStore:
        """Open (and migrate) the database on the worker thread that will own it."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatbrush-db")
        store = await asyncio.get_running_loop().run_in_executor(executor, Store, path)
        return cls(store, executor)

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        await self.run(self.sync.close)
        self._executor.shutdown(wait=True)
