"""PostgreSQL persistence: one database shared by any number of ``chatbrush`` processes.

Selected by ``DATABASE_URL=postgresql://…`` (psycopg 3, async). Everything SQLite keeps is
kept here with the same columns (:mod:`storage.records` reads both), plus what several
processes need:

- **Short transactions only.** Every Store call is one statement (an autocommit
  transaction, one round trip) or, for ``/reset``, one short transaction; nothing is held
  open across a model call or a platform call.
- **Numbers from the database.** Turn ids come from identity columns; a thread's version
  numbers from its own counter, bumped under the thread's row lock in the statement that
  inserts the turn, so two processes can never hand out the same ``v3``.
- **The inbox as a work queue.** A claim takes, ``FOR UPDATE SKIP LOCKED``, events that are
  the oldest unfinished one of their lane and not under a live lease: any process may take
  the next event, one lane's events run one at a time in arrival order whichever process
  runs them, and two processes never take the same event. Inserts into one lane are
  serialised by a transaction-level advisory lock, so a lane's ids follow commit order. A
  process that dies keeps its claims only until their lease runs out; then another
  process resumes the event from the progress recorded with it.
- **Wake-ups across processes.** Storing or finishing an event sends ``NOTIFY
  chatbrush_inbox``; one listening connection per process (outside the pool) turns that
  into :meth:`PostgresStore.wait_for_inbox`, so an event a web process stores is claimed
  by an idle worker at once rather than at its next poll.

Connections: the pool holds 1 to ``CHATBRUSH_DB_POOL_SIZE`` connections and the listener
one more, so a process uses at most ``pool size + 1`` (and one more for a moment at
start-up, to migrate). Calls beyond the pool's size wait their turn for a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import socket
import time
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Sequence,
)
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bot.core.config import Settings
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
from storage.parsed_parts import ParsedParts
from storage.postgres_schema import MIGRATION_LOCK, MIGRATIONS, SPEND_LOCK
from storage.records import (
    INBOX_COLUMNS,
    THREAD_COLUMNS,
    TURN_COLUMNS,
    dump_parts,
    entry_from_row,
    event_json,
    failure_counts,
    forgotten_events,
    load_parts,
    thread_from_row,
    turn_from_row,
)

log = logging.getLogger(__name__)
# psycopg_pool logs every failed reconnection attempt; the store's own line a minute
# (DatabaseUnavailable, "database … unavailable") says the same without the flood
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
R = TypeVar("R")

#: the channel every process listens on for "the inbox changed"
NOTIFY_CHANNEL = "chatbrush_inbox"
#: seconds to wait for the database when opening (connect and pool fill)
CONNECT_TIMEOUT = 15.0
#: seconds a call may wait for a free pooled connection: a busy database makes turns
#: wait, not fail; one that is down fails them after this long
CONNECTION_WAIT = 60.0
#: while the database is known to be down, calls wait this long for it instead (a webhook
#: request gets its 503 in seconds, and the platform delivers the update again)
DOWN_WAIT = 5.0
#: pooled connections idle this long are closed, and none lives longer than the lifetime
#: (each is also checked before it is lent: none that died in a restart is ever used)
POOL_MAX_IDLE = 300.0
POOL_MAX_LIFETIME = 1800.0
#: at most one "database unavailable" line per this many seconds
DOWN_LOG_EVERY = 60.0
#: how often a transaction that lost a deadlock or serialisation race is tried again
RACE_ATTEMPTS = 4

_EPOCH = "extract(epoch from now())::float8"
_UNFINISHED = "('received', 'processing')"
_NOTIFY = f"pg_notify('{NOTIFY_CHANNEL}', '')"
_SURROGATE_OR_NUL = re.compile("[\ud800-\udfff\x00]")


def _cols(columns: Sequence[str], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + c for c in columns)


_THREAD = _cols(THREAD_COLUMNS)
_TURN = _cols(TURN_COLUMNS)
_INBOX = _cols(INBOX_COLUMNS)

_FINISH = (
    "UPDATE inbox SET status = %(status)s, error = %(error)s, finished_at = " + _EPOCH
    + ", owner = NULL, lease_until = 0 WHERE id = ANY(%(done)s::bigint[])"
    + " RETURNING " + _NOTIFY
)

_CLAIM = f"""
WITH heads AS (
    SELECT DISTINCT ON (lane) id FROM inbox
    WHERE status IN {_UNFINISHED}
    ORDER BY lane, id
), picked AS (
    SELECT id FROM inbox
    WHERE id IN (SELECT id FROM heads)
      AND platform = ANY(%(platforms)s::text[])
      AND (status = 'received' OR (status = 'processing' AND lease_until < {_EPOCH}))
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE inbox SET status = 'processing', owner = %(owner)s,
    lease_until = {_EPOCH} + %(lease)s, attempts = attempts + 1
FROM picked WHERE inbox.id = picked.id
RETURNING {_cols(INBOX_COLUMNS, "inbox")}
"""

_ADD_EVENT = f"""
WITH lane_lock AS (SELECT pg_advisory_xact_lock(hashtextextended(%(lane)s, 0)))
INSERT INTO inbox (platform, chat_id, message_id, lane, group_id, event, received_at)
SELECT %(platform)s, %(chat_id)s, %(message_id)s, %(lane)s, %(group_id)s, %(event)s, {_EPOCH}
FROM lane_lock
ON CONFLICT (platform, chat_id, message_id) DO NOTHING
RETURNING {_INBOX}, {_NOTIFY}
"""

_ADD_TURN = f"""
WITH new_turn AS (SELECT nextval(pg_get_serial_sequence('turns', 'id')) AS id),
thread AS (
    UPDATE threads SET versions = versions + %(counts)s,
        head_turn_id = CASE WHEN %(move_head)s THEN (SELECT id FROM new_turn)
                            ELSE head_turn_id END
    WHERE id = %(thread_id)s
    RETURNING versions
),
{{images}}turn AS (
    INSERT INTO turns (id, thread_id, parent_id, role, status, author_id, author_name, parts,
                       created_at, version, error)
    SELECT new_turn.id, %(thread_id)s, %(parent_id)s, %(role)s, %(status)s, %(author_id)s,
           %(author_name)s, %(parts)s, {_EPOCH},
           CASE WHEN %(counts)s = 1 THEN thread.versions END, %(error)s
    FROM new_turn, thread
    RETURNING id, created_at, version
),
turn_images AS (
    INSERT INTO turn_images (turn_id, sha256)
    SELECT turn.id, sha FROM turn, unnest(%(refs)s::text[]) AS sha
),
progress AS (
    UPDATE inbox SET
        turn_id = CASE WHEN %(counts)s = 1 THEN inbox.turn_id ELSE turn.id END,
        answer_turn_id = CASE WHEN %(counts)s = 1 THEN turn.id ELSE inbox.answer_turn_id END
    FROM turn WHERE inbox.id = %(event_id)s
)
SELECT id, created_at, version FROM turn
"""

#: one row per new picture, its bytes sent as binary (an array of them, or text, would be
#: encoded and decoded again: ten times slower for a 1.3 MB picture)
_IMAGE_ROW = ("(%(sha{n})s, %(mime{n})s, %(width{n})s, %(height{n})s, %(size{n})s,"
              " %(data{n})b, " + _EPOCH + ")")


def _add_turn_sql(new_images: int) -> str:
    """The statement of :meth:`PostgresStore.add_turn` for that many new pictures."""
    if not new_images:
        return _ADD_TURN.replace("{images}", "")
    rows = ", ".join(_IMAGE_ROW.format(n=n) for n in range(new_images))
    return _ADD_TURN.replace(
        "{images}",
        "stored_images AS (INSERT INTO images (sha256, mime_type, width, height, size, data,"
        f" created_at) VALUES {rows} ON CONFLICT (sha256) DO NOTHING),\n",
    )


_MARK_DELIVERED = f"""
WITH delivered AS (
    UPDATE turns SET status = %(ok)s WHERE id = %(turn_id)s
),
links AS (
    INSERT INTO message_links (platform, chat_id, message_id, turn_id, thread_id, created_at)
    SELECT %(platform)s, %(chat_id)s, message_id, %(turn_id)s, %(thread_id)s, {_EPOCH}
    FROM unnest(%(message_ids)s::text[]) AS message_id
    ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET turn_id = EXCLUDED.turn_id,
        thread_id = EXCLUDED.thread_id, created_at = EXCLUDED.created_at
),
head AS (
    UPDATE threads SET head_turn_id = %(turn_id)s WHERE id = %(thread_id)s AND %(move_head)s
),
finished AS ({_FINISH})
SELECT count(*) FROM finished
"""

_LINK = f"""
INSERT INTO message_links (platform, chat_id, message_id, turn_id, thread_id, created_at)
VALUES (%s, %s, %s, %s, %s, {_EPOCH})
ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET turn_id = EXCLUDED.turn_id,
    thread_id = EXCLUDED.thread_id, created_at = EXCLUDED.created_at
"""


class PooledHealth:
    """The pool's ``check``: a pooled connection older than the last outage the store saw
    (the listener hears of a restart at once) is tried before it is lent, and dropped if
    it died; the others are lent as they are (a check per call would double the round
    trips of every turn)."""

    def __init__(self) -> None:
        self._born: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary())
        self._last_outage = -math.inf

    def outage(self) -> None:
        self._last_outage = time.monotonic()

    async def born(self, conn: AsyncConnection[Any]) -> None:
        self._born[conn] = time.monotonic()

    async def check(self, conn: AsyncConnection[Any]) -> None:
        if self._born.get(conn, -math.inf) <= self._last_outage:
            await AsyncConnectionPool.check_connection(conn)  # raises if it died
            self._born[conn] = time.monotonic()


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL could not be reached or dropped the connection; the call did nothing
    that was committed unless the message says otherwise, and may be tried again."""


class PostgresStore:
    """The :class:`bot.core.store.Store` port on PostgreSQL (see the module docstring)."""

    def __init__(self, pool: AsyncConnectionPool[Any], conninfo: str, *, label: str,
                 password: str | None, application_name: str) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self.label = label
        self.application_name = application_name
        self._password = password
        self._inbox_news = asyncio.Event()
        self._listening = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._listen_connection: AsyncConnection[Any] | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._closing = False
        #: since when (monotonic) the database has not answered; None while it does
        self._pooled = PooledHealth()
        self._down_since: float | None = None
        self._down_logged = -math.inf
        self._said_down = False
        #: parsed turn parts, reused while the stored JSON is unchanged (by any process)
        self.parsed_parts = ParsedParts(load_parts)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        """Connect, migrate (once, whichever process gets there first), fill the pool and
        start listening for inbox news. Raises :class:`DatabaseUnavailable` with a line
        that names the server but never the password."""
        params = _conninfo_params(url)
        label = describe_url(url)
        # how operators tell the processes apart in pg_stat_activity
        application_name = f"chatbrush {socket.gethostname()}:{os.getpid()}:{id(params):x}"
        password = params.get("password")
        conninfo = url
        health = PooledHealth()
        try:
            await migrate(conninfo)
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                conninfo, min_size=1, max_size=pool_size, open=False, name="chatbrush",
                kwargs={"autocommit": True, "application_name": application_name},
                timeout=CONNECTION_WAIT, configure=health.born, check=health.check,
                max_idle=POOL_MAX_IDLE, max_lifetime=POOL_MAX_LIFETIME,
            )
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(
                f"cannot use the PostgreSQL database {label}: {_reason(exc, password)}"
            ) from None
        store = cls(pool, conninfo, label=label, password=password,
                    application_name=application_name)
        store._pooled = health
        store._listener = asyncio.create_task(store._listen(), name="chatbrush-inbox-listen")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await store._listening.wait()
        return store

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            _, pending = await asyncio.wait({self._listener}, timeout=5)
            if pending and self._listen_connection is not None:  # a cancellation lost
                await self._listen_connection.close()
                await asyncio.wait(pending, timeout=5)
            self._listener = None
        await self._settle()
        await self._pool.close()

    # ------------------------------------------------------------------ plumbing
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection in autocommit mode; database trouble comes out as
        :class:`DatabaseUnavailable` (the intake logs it and tries again later)."""
        wait = CONNECTION_WAIT if self._down_since is None else DOWN_WAIT
        errors_before = self._pool.get_stats().get("connections_errors", 0)
        try:
            async with self._pool.connection(timeout=wait) as conn:
                self._note_up()
                yield conn
        except PoolTimeout as exc:
            if self._pool.get_stats().get("connections_errors", 0) > errors_before:
                self._note_down(exc)  # not busy: the server refuses connections
            raise DatabaseUnavailable(
                f"no database connection free within {wait:.0f}s ({self.label}): "
                f"{_reason(exc, self._password)}"
            ) from None
        except psycopg.errors.TransactionRollback:
            raise  # a lost race: _retrying runs it again
        except psycopg.OperationalError as exc:
            self._note_down(exc)
            raise DatabaseUnavailable(
                f"database {self.label}: {_reason(exc, self._password)}"
            ) from None

    def _note_down(self, exc: BaseException) -> None:
        """One warning line a minute while the database is down, never a traceback."""
        now = time.monotonic()
        self._pooled.outage()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_logged >= DOWN_LOG_EVERY:
            self._down_logged, self._said_down = now, True
            log.warning("database %s unavailable for %.0fs (%s); calls fail fast and are "
                        "tried again later", self.label, now - self._down_since,
                        _reason(exc, self._password))

    def _note_up(self) -> None:
        if self._down_since is not None:
            if self._said_down:  # a flap within the minute stays as quiet as its outage
                log.warning("database %s is back after %.0fs", self.label,
                            time.monotonic() - self._down_since)
            self._down_since, self._said_down = None, False

    async def _shielded(self, work: Coroutine[Any, Any, R]) -> R:
        """Run ``work`` to its end even if the caller is cancelled: a statement is never
        torn mid-way, and the caller's cancellation is delivered at once (psycopg's pool
        can lose a cancellation that lands while it hands out a connection)."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def _settle(self) -> None:
        """Until every statement a cancelled caller left running has ended."""
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _rows(self, query: LiteralString | sql.Composed, params: Any = None, *,
                    binary: bool = False) -> list[tuple[Any, ...]]:
        return await self._shielded(self._rows_now(query, params, binary=binary))

    async def _rows_now(self, query: LiteralString | sql.Composed, params: Any = None, *,
                        binary: bool = False) -> list[tuple[Any, ...]]:
        """One statement (one autocommit transaction, one round trip) and its rows;
        a deadlock or serialisation failure is tried again, the statement being atomic."""
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                async with self._connection() as conn:
                    cursor = await conn.execute(query, params, binary=binary)
                    return await cursor.fetchall() if cursor.description else []
            except psycopg.errors.TransactionRollback:
                if attempt == RACE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def _row(self, query: LiteralString | sql.Composed, params: Any = None
                   ) -> tuple[Any, ...] | None:
        rows = await self._rows(query, params)
        return rows[0] if rows else None

    async def _listen(self) -> None:
        """Keep one connection LISTENing; while it is down, the intake's poll covers."""
        delay = 0.5
        while not self._closing:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT),
                    application_name=self.application_name)
                self._listen_connection = conn
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    self._inbox_news.set()  # whatever was stored while nobody listened
                    delay = 0.5
                    async for _ in conn.notifies():
                        self._inbox_news.set()
            except (psycopg.Error, OSError) as exc:
                if self._closing:
                    return
                if self._listening.is_set():
                    log.warning("inbox notifications from %s interrupted (%s); polling until "
                                "they are back", self.label, _reason(exc, self._password))
                # the first to hear of a restart: calls wait seconds, not a minute, from now
                self._note_down(exc)
            self._listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def wait_for_inbox(self, seconds: float) -> None:
        """Until another process (or this one) stored or finished an inbox event since the
        last call, or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._inbox_news.wait()
        self._inbox_news.clear()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    # ------------------------------------------------------------------ threads
    async def create_thread(self, chat: ChatKey, *, lane: str, external_key: str | None = None,
                            created_by: str = "") -> Thread:
        row = await self._row(
            "INSERT INTO threads (platform, chat_id, topic_id, external_key, created_at,"
            f" created_by, lane) VALUES (%s, %s, %s, %s, {_EPOCH}, %s, %s)"
            f" RETURNING {_THREAD}",
            [chat.platform, chat.chat_id, chat.topic_id or "", _text(external_key),
             _text(created_by), _text(lane)],
        )
        assert row is not None
        return thread_from_row(row)

    async def get_thread(self, thread_id: int) -> Thread | None:
        row = await self._row(f"SELECT {_THREAD} FROM threads WHERE id = %s", [thread_id])
        return thread_from_row(row) if row else None

    async def thread_by_key(self, chat: ChatKey, external_key: str) -> Thread | None:
        row = await self._row(
            f"SELECT {_THREAD} FROM threads WHERE platform = %s AND chat_id = %s"
            " AND topic_id = %s AND external_key = %s ORDER BY id DESC LIMIT 1",
            [chat.platform, chat.chat_id, chat.topic_id or "", _text(external_key)],
        )
        return thread_from_row(row) if row else None

    async def current_thread(self, chat: ChatKey) -> Thread | None:
        row = await self._row(
            f"SELECT {_cols(THREAD_COLUMNS, 't')} FROM chat_state s"
            " JOIN threads t ON t.id = s.current_thread_id"
            " WHERE s.platform = %s AND s.chat_id = %s AND s.topic_id = %s",
            [chat.platform, chat.chat_id, chat.topic_id or ""],
        )
        return thread_from_row(row) if row else None

    async def set_current_thread(self, chat: ChatKey, thread_id: int | None) -> None:
        await self._rows(
            "INSERT INTO chat_state (platform, chat_id, topic_id, current_thread_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (platform, chat_id, topic_id)"
            " DO UPDATE SET current_thread_id = EXCLUDED.current_thread_id",
            [chat.platform, chat.chat_id, chat.topic_id or "", thread_id],
        )

    async def set_head(self, thread_id: int, turn_id: int | None, *,
                       done_event: int | None = None) -> None:
        await self._rows(
            f"WITH finished AS ({_FINISH})"
            " UPDATE threads SET head_turn_id = %(turn_id)s WHERE id = %(thread_id)s",
            {"turn_id": turn_id, "thread_id": thread_id, **_finishing(done_event)},
        )

    async def delete_thread(self, thread_id: int) -> None:
        """Forget a thread: its turns and links go; images nobody else uses go too."""
        await self._transaction(self._delete_thread, thread_id)

    async def _transaction(self, work: Callable[..., Awaitable[R]], *args: Any) -> R:
        """``work(connection, *args)`` as one short transaction of several statements
        (shielded and retried after a lost race, like a single statement)."""
        async def attempt_all() -> R:
            for attempt in range(1, RACE_ATTEMPTS + 1):
                try:
                    async with self._connection() as conn, conn.transaction():
                        return await work(conn, *args)
                except psycopg.errors.TransactionRollback:
                    if attempt == RACE_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.01 * attempt)
            raise AssertionError("unreachable")

        return await self._shielded(attempt_all())

    @staticmethod
    async def _delete_thread(conn: AsyncConnection[Any], thread_id: int) -> None:
        await conn.execute("SELECT 1 FROM threads WHERE id = %s FOR UPDATE", [thread_id])
        await conn.execute("UPDATE chat_state SET current_thread_id = NULL"
                           " WHERE current_thread_id = %s", [thread_id])
        await conn.execute("DELETE FROM message_links WHERE thread_id = %s", [thread_id])
        cursor = await conn.execute(
            "DELETE FROM turn_images WHERE turn_id IN"
            " (SELECT id FROM turns WHERE thread_id = %s) RETURNING sha256", [thread_id])
        shas = sorted({row[0] for row in await cursor.fetchall()})
        await conn.execute("UPDATE threads SET head_turn_id = NULL WHERE id = %s", [thread_id])
        await conn.execute("DELETE FROM turns WHERE thread_id = %s", [thread_id])
        await conn.execute("DELETE FROM threads WHERE id = %s", [thread_id])
        if shas:
            await conn.execute(
                "DELETE FROM images i WHERE sha256 = ANY(%s::text[])"
                " AND NOT EXISTS (SELECT 1 FROM turn_images t WHERE t.sha256 = i.sha256)",
                [shas],
            )

    # ------------------------------------------------------------------ turns
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
        """The turn, its images, the thread's version counter and head, and the event's
        progress: one statement, so one commit and one round trip."""
        query, params, stored = _turn_statement(
            thread_id, parent_id=parent_id, role=role, parts=parts, author_id=author_id,
            author_name=author_name, status=status, error=error, move_head=move_head,
            event_id=event_id)
        row = await self._row(query, params)
        if row is None:
            raise LookupError(f"thread {thread_id} does not exist (it was reset)")
        turn_id, created_at, version = row
        return Turn(turn_id, thread_id, parent_id, Role(role), status, author_id,
                    author_name, stored, created_at, version, error)

    async def add_linked_turns(self, thread_id: int, *, parent_id: int | None,
                               turns: Sequence[Sequence[NewPart]], author_id: str,
                               author_name: str, event_id: int) -> list[Turn]:
        """One user turn per picture and the event's record of them, in one commit."""
        async def write(conn: AsyncConnection[Any]) -> list[Turn]:
            written = []
            for position, parts in enumerate(turns):
                query, params, stored = _turn_statement(
                    thread_id, parent_id=parent_id, role=Role.USER, parts=parts,
                    author_id=author_id, author_name=author_name, status=TurnStatus.OK,
                    error=None, move_head=False, event_id=None)
                row = await (await conn.execute(query, params)).fetchone()
                if row is None:
                    raise LookupError(f"thread {thread_id} does not exist (it was reset)")
                await conn.execute("INSERT INTO inbox_turns (entry_id, position, turn_id)"
                                   " VALUES (%s, %s, %s)", [event_id, position, row[0]])
                written.append(Turn(row[0], thread_id, parent_id, Role.USER, TurnStatus.OK,
                                    author_id, author_name, stored, row[1], row[2], None))
            return written

        return await self._transaction(write)

    async def mark_failed(self, turn_id: int, error: str) -> None:
        await self._rows("UPDATE turns SET status = %s, error = %s WHERE id = %s",
                         [TurnStatus.FAILED.value, _text(error), turn_id])

    async def set_turn_region(self, turn_id: int, region: NewRegion) -> None:
        async def write(conn: AsyncConnection[Any]) -> None:
            sha = None
            if region.image is not None:
                picture = region.image
                sha = hashlib.sha256(picture.data).hexdigest()
                await conn.execute(
                    "INSERT INTO images (sha256, mime_type, width, height, size, data,"
                    f" created_at) VALUES (%s, %s, %s, %s, %s, %b, {_EPOCH})"
                    " ON CONFLICT (sha256) DO NOTHING",
                    [sha, picture.mime_type, picture.width, picture.height,
                     len(picture.data), picture.data])
                await conn.execute("INSERT INTO turn_images (turn_id, sha256) VALUES (%s, %s)"
                                   " ON CONFLICT DO NOTHING", [turn_id, sha])
            await conn.execute(
                "INSERT INTO turn_regions (turn_id, mask, width, height, image_sha256)"
                " VALUES (%s, %b, %s, %s, %s) ON CONFLICT (turn_id) DO UPDATE SET"
                " mask = EXCLUDED.mask, width = EXCLUDED.width, height = EXCLUDED.height,"
                " image_sha256 = EXCLUDED.image_sha256",
                [turn_id, region.mask_png, region.width, region.height, sha])

        await self._transaction(write)

    async def turn_regions(self, turn_ids: Sequence[int]) -> dict[int, TurnRegion]:
        if not turn_ids:
            return {}
        rows = await self._rows(
            "SELECT r.turn_id, r.mask, r.width, r.height, i.sha256, i.mime_type, i.width,"
            " i.height, i.size FROM turn_regions r LEFT JOIN images i"
            " ON i.sha256 = r.image_sha256 WHERE r.turn_id = ANY(%s::bigint[])",
            [list(turn_ids)])
        return {row[0]: TurnRegion(row[0], bytes(row[1]), row[2], row[3],
                                   ImageRef(*row[4:9]) if row[4] else None)
                for row in rows}

    async def get_turn(self, turn_id: int) -> Turn | None:
        row = await self._row(f"SELECT {_TURN} FROM turns WHERE id = %s", [turn_id])
        return turn_from_row(row, self.parsed_parts) if row else None

    async def turns_of(self, thread_id: int) -> list[Turn]:
        rows = await self._rows(
            f"SELECT {_TURN} FROM turns WHERE thread_id = %s ORDER BY id", [thread_id])
        return [turn_from_row(r, self.parsed_parts) for r in rows]

    async def path(self, turn_id: int | None, *, limit: int | None = None) -> list[Turn]:
        """Root → ``turn_id`` in one recursive query; with ``limit``, only the newest
        ``limit`` turns of it (oldest first)."""
        if turn_id is None:
            return []
        rows = await self._rows(
            "WITH RECURSIVE up(id, depth) AS (SELECT %(turn)s::bigint, 0 UNION ALL"
            " SELECT t.parent_id, up.depth + 1 FROM turns t JOIN up ON t.id = up.id"
            " WHERE t.parent_id IS NOT NULL"
            " AND (%(limit)s::int IS NULL OR up.depth + 1 < %(limit)s::int))"
            f" SELECT {_cols(TURN_COLUMNS, 'turns')} FROM up JOIN turns ON turns.id = up.id"
            " ORDER BY up.depth DESC",
            {"turn": turn_id, "limit": limit},
        )
        return [turn_from_row(r, self.parsed_parts) for r in rows]

    async def failed_children(self, parent_id: int | None, thread_id: int) -> list[Turn]:
        rows = await self._rows(
            f"SELECT {_TURN} FROM turns WHERE thread_id = %s AND status = %s"
            " AND role = 'user' AND parent_id IS NOT DISTINCT FROM %s ORDER BY id DESC",
            [thread_id, TurnStatus.FAILED.value, parent_id],
        )
        return [turn_from_row(r, self.parsed_parts) for r in rows]

    async def undelivered(self, thread_id: int) -> list[Turn]:
        rows = await self._rows(
            f"SELECT {_TURN} FROM turns WHERE thread_id = %s AND status = %s ORDER BY id",
            [thread_id, TurnStatus.UNDELIVERED.value],
        )
        return [turn_from_row(r, self.parsed_parts) for r in rows]

    async def mark_delivered(self, turn: Turn, *, chat: ChatKey, message_ids: Sequence[str],
                             move_head: bool, done_event: int | None = None) -> None:
        await self._rows(_MARK_DELIVERED, {
            "ok": TurnStatus.OK.value, "turn_id": turn.id, "thread_id": turn.thread_id,
            "platform": chat.platform, "chat_id": chat.chat_id,
            "message_ids": list(message_ids), "move_head": move_head,
            **_finishing(done_event),
        })

    async def image_bytes(self, sha256: str) -> bytes:
        # binary results: a picture crosses the wire as its bytes, not twice as many hex digits
        rows = await self._rows("SELECT data FROM images WHERE sha256 = %s", [sha256],
                                binary=True)
        if not rows:
            raise KeyError(sha256)
        return bytes(rows[0][0])

    # ------------------------------------------------------------------ message links
    async def link_message(self, chat: ChatKey, message_id: str, turn: Turn) -> None:
        await self._rows(_LINK, [chat.platform, chat.chat_id, _text(message_id), turn.id,
                                 turn.thread_id])

    async def linked_turn(self, chat: ChatKey, message_id: str) -> Turn | None:
        row = await self._row(
            f"SELECT {_cols(TURN_COLUMNS, 'turns')} FROM message_links l"
            " JOIN turns ON turns.id = l.turn_id"
            " WHERE l.platform = %s AND l.chat_id = %s AND l.message_id = %s",
            [chat.platform, chat.chat_id, _text(message_id)],
        )
        return turn_from_row(row, self.parsed_parts) if row else None

    # ------------------------------------------------------------------ usage
    async def record_usage(self, *, chat: ChatKey, user_id: str, thread_id: int | None,
                           model: str, ok: bool, images: int = 0, prompt_tokens: int = 0,
                           output_tokens: int = 0, request_bytes: int = 0,
                           cost_micros: int = 0, latency_ms: int | None = None,
                           failure: FailureKind | None = None, at: float | None = None,
                           event_id: int | None = None, turn_id: int | None = None) -> None:
        """One call, and (with ``event_id``) one of its event's reservations gone, in one
        statement."""
        await self._rows(
            "WITH used AS (DELETE FROM spend_reservations WHERE id = (SELECT min(id) FROM"
            " spend_reservations WHERE event_id = %(event)s))"
            " INSERT INTO usage (platform, chat_id, user_id, thread_id, model, ok, images,"
            " prompt_tokens, output_tokens, request_bytes, created_at, cost_micros,"
            " latency_ms, failure, turn_id) VALUES (%(platform)s, %(chat)s, %(user)s,"
            " %(thread)s, %(model)s, %(ok)s, %(images)s, %(prompt)s, %(output)s, %(request)s,"
            f" COALESCE(%(at)s, {_EPOCH}), %(cost)s, %(latency)s, %(failure)s, %(turn)s)",
            {"event": event_id, "platform": chat.platform, "chat": chat.chat_id,
             "user": _text(user_id), "thread": thread_id, "model": _text(model), "ok": ok,
             "images": images, "prompt": prompt_tokens, "output": output_tokens,
             "request": request_bytes, "at": at, "cost": cost_micros,
             "latency": latency_ms,
             "failure": None if ok or failure is None else failure.value,
             "turn": turn_id},
        )

    async def usage(self, *, platform: str, chat_id: str | None = None,
                    user_id: str | None = None, since: float | None = None) -> UsageSummary:
        row = await self._row(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT ok), COALESCE(SUM(images), 0),"
            " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            " COALESCE(SUM(cost_micros), 0) FROM usage WHERE platform = %(platform)s"
            " AND (%(chat_id)s::text IS NULL OR chat_id = %(chat_id)s)"
            " AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)"
            " AND (%(since)s::float8 IS NULL OR created_at >= %(since)s)",
            {"platform": platform, "chat_id": chat_id, "user_id": user_id, "since": since},
        )
        assert row is not None
        return UsageSummary(*(int(v) for v in row))

    async def call_report(self, *, since: float, top: int = 5) -> CallReport:
        """One statement; percentiles by nearest rank (``percentile_disc``)."""
        row = await self._row(
            "SELECT (SELECT COUNT(*) FROM usage WHERE created_at >= %(since)s),"
            " (SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE created_at >= %(since)s),"
            " (SELECT COALESCE(json_agg(json_build_array(kind, n) ORDER BY n DESC, kind),"
            "  '[]') FROM (SELECT COALESCE(failure, 'unknown') AS kind, COUNT(*) AS n"
            "  FROM usage WHERE created_at >= %(since)s AND NOT ok GROUP BY 1) f),"
            " (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM usage"
            "  WHERE created_at >= %(since)s AND latency_ms IS NOT NULL),"
            " (SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM usage"
            "  WHERE created_at >= %(since)s AND latency_ms IS NOT NULL),"
            " (SELECT COALESCE(json_agg(json_build_array(platform, chat_id, n, spent)"
            "  ORDER BY n DESC, spent DESC, platform, chat_id), '[]') FROM"
            "  (SELECT platform, chat_id, COUNT(*) AS n, COALESCE(SUM(cost_micros), 0) AS spent"
            "   FROM usage WHERE created_at >= %(since)s GROUP BY platform, chat_id"
            "   ORDER BY 3 DESC, 4 DESC, platform, chat_id LIMIT %(top)s) b)",
            {"since": since, "top": top},
        )
        assert row is not None
        calls, cost, failures, p50, p95, busiest = row
        return CallReport(
            int(calls), failure_counts(failures), int(cost),
            None if p50 is None else int(p50), None if p95 is None else int(p95),
            tuple(ChatCalls(str(p), str(c), int(n), int(spent)) for p, c, n, spent in busiest),
        )

    async def turn_costs(self, thread_id: int) -> dict[int, int]:
        rows = await self._rows(
            "SELECT turn_id, SUM(cost_micros) FROM usage WHERE thread_id = %s"
            " AND turn_id IS NOT NULL GROUP BY turn_id", [thread_id])
        return {int(turn_id): int(cost) for turn_id, cost in rows}

    # ------------------------------------------------------------------ privacy, retention
    async def missing_images(self, sha256s: Collection[str]) -> set[str]:
        wanted = set(sha256s)
        if not wanted:
            return set()
        rows = await self._rows("SELECT sha256 FROM images WHERE sha256 = ANY(%s::text[])",
                                [sorted(wanted)])
        return wanted - {row[0] for row in rows}

    async def _authored_turns(self, conn: AsyncConnection[Any], platform: str,
                              user_id: str, chat_id: str | None) -> list[Turn]:
        """The user turns ``user_id`` sent that still hold something of theirs."""
        cursor = await conn.execute(
            f"SELECT {_cols(TURN_COLUMNS, 'turns')} FROM turns"
            " JOIN threads ON threads.id = turns.thread_id WHERE turns.role = 'user'"
            " AND turns.author_id = %(user)s AND threads.platform = %(platform)s"
            " AND (%(chat)s::text IS NULL OR threads.chat_id = %(chat)s) ORDER BY turns.id",
            {"user": user_id, "platform": platform, "chat": chat_id})
        turns = [turn_from_row(row, self.parsed_parts) for row in await cursor.fetchall()]
        return [t for t in turns if t.author_name or t.parts != _FORGOTTEN_PARTS]

    async def authored_summary(self, platform: str, user_id: str, *,
                               chat_id: str | None) -> AuthoredSummary:
        async with self._connection() as conn:
            turns = await self._authored_turns(conn, platform, user_id, chat_id)
        return AuthoredSummary(
            prompts=sum(1 for t in turns if t.text and t.text != REMOVED_BY_AUTHOR),
            images=sum(len(t.images) for t in turns),
            conversations=len({t.thread_id for t in turns}),
        )

    async def forget_author(self, platform: str, user_id: str, *, chat_id: str | None,
                            handling: Sequence[int] = ()) -> ForgetReport:
        """In one transaction; then the space is vacuumed. Plain VACUUM frees dead rows
        but need not overwrite their bytes, so the inbox (kept small by the weekly prune)
        is rewritten whole (``VACUUM FULL``: its old file is deleted); the larger turns and
        images tables are vacuumed. WAL archives and backups keep what they kept."""
        async def forget(conn: AsyncConnection[Any]) -> ForgetReport:
            turns = await self._authored_turns(conn, platform, user_id, chat_id)
            ids = [t.id for t in turns]
            await conn.execute("UPDATE turns SET parts = %s, author_name = ''"
                               " WHERE id = ANY(%s::bigint[])",
                               [dump_parts(_FORGOTTEN_PARTS), ids])
            cursor = await conn.execute("DELETE FROM turn_images WHERE turn_id ="
                                        " ANY(%s::bigint[]) RETURNING sha256", [ids])
            shas = {row[0] for row in await cursor.fetchall()}
            await conn.execute("DELETE FROM turn_regions WHERE turn_id = ANY(%s::bigint[])",
                               [ids])
            events = await _scrub_events(conn, platform, user_id, chat_id, handling)
            erased, _ = await _drop_unused_images(conn, shas)
            return ForgetReport(turns=len(turns), images_erased=erased,
                                events_scrubbed=events)

        report = await self._transaction(forget)
        await self._vacuum_images()
        await self._rows("VACUUM FULL inbox")  # the rows that held the person's name
        await self._rows("VACUUM turns")
        return report

    async def purge_idle_images(self, *, idle_before: float) -> PurgeReport:
        async def purge(conn: AsyncConnection[Any]) -> PurgeReport:
            cursor = await conn.execute(
                "SELECT t.id FROM threads t WHERE EXISTS (SELECT 1 FROM turn_images ti"
                " JOIN turns u ON u.id = ti.turn_id WHERE u.thread_id = t.id)"
                " AND COALESCE((SELECT MAX(created_at) FROM turns WHERE thread_id = t.id),"
                " t.created_at) < %s", [idle_before])
            idle = [row[0] for row in await cursor.fetchall()]
            cursor = await conn.execute(
                "UPDATE turns SET status = %s, error = 'expired' WHERE status = %s"
                " AND thread_id = ANY(%s::bigint[])",
                [TurnStatus.FAILED.value, TurnStatus.UNDELIVERED.value, idle])
            expired = cursor.rowcount
            cursor = await conn.execute(
                "DELETE FROM turn_images WHERE turn_id IN (SELECT id FROM turns"
                " WHERE thread_id = ANY(%s::bigint[])) RETURNING sha256", [idle])
            shas = {row[0] for row in await cursor.fetchall()}
            erased, size = await _drop_unused_images(conn, shas)
            return PurgeReport(threads=len(idle), images_erased=erased, bytes_erased=size,
                               answers_expired=expired, bytes_reclaimed=0)

        report = await self._transaction(purge)
        if report.images_erased:
            await self._vacuum_images()
        return report

    async def _vacuum_images(self) -> None:
        """Make the erased pictures' space reusable now (VACUUM cannot run inside a
        transaction: a pooled connection is in autocommit)."""
        await self._rows("VACUUM images")

    # ------------------------------------------------------------------ budgets
    async def reserve_spend(self, *, chat: ChatKey, user_id: str, event_id: int | None,
                            amount_micros: int, calls: int, limits: Sequence[SpendLimit],
                            now: float, expires_at: float) -> SpendLimit | None:
        """Check every limit and reserve in one transaction under one advisory lock, so
        two processes cannot both pass a limit that has room for only one of them."""
        async def reserve(conn: AsyncConnection[Any]) -> SpendLimit | None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [SPEND_LOCK])
            for limit in limits:
                where, args = _scope(limit.scope, chat, user_id)
                cursor = await conn.execute(
                    f"SELECT (SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE {where}"
                    " AND created_at >= %s), (SELECT COALESCE(SUM(amount_micros), 0) FROM"
                    f" spend_reservations WHERE {where} AND expires_at > %s)",
                    [*args, limit.since, *args, now])
                row = await cursor.fetchone()
                spent, held = (int(row[0]), int(row[1])) if row else (0, 0)
                if spent + held + amount_micros * calls > limit.limit_micros:
                    return limit
            await conn.execute(
                "INSERT INTO spend_reservations (platform, chat_id, user_id, event_id,"
                " amount_micros, created_at, expires_at)"
                " SELECT %s, %s, %s, %s, %s, %s, %s FROM generate_series(1, %s)",
                [chat.platform, chat.chat_id, _text(user_id), event_id, amount_micros, now,
                 expires_at, calls])
            await conn.execute("DELETE FROM spend_reservations WHERE expires_at <= %s", [now])
            return None

        return await self._transaction(reserve)

    async def release_spend(self, event_id: int) -> None:
        await self._rows("DELETE FROM spend_reservations WHERE event_id = %s", [event_id])

    # ------------------------------------------------------------------ chat settings
    async def chat_settings(self, chat: ChatKey) -> dict[str, str]:
        rows = await self._rows(
            "SELECT name, value FROM chat_settings WHERE platform = %s AND chat_id = %s",
            [chat.platform, chat.chat_id])
        return {str(name): str(value) for name, value in rows}

    async def set_chat_setting(self, chat: ChatKey, name: str, value: str | None, *,
                               changed_by: str) -> None:
        if value is None:
            await self._rows("DELETE FROM chat_settings WHERE platform = %s AND chat_id = %s"
                             " AND name = %s", [chat.platform, chat.chat_id, name])
            return
        await self._rows(
            "INSERT INTO chat_settings (platform, chat_id, name, value, changed_by,"
            f" changed_at) VALUES (%s, %s, %s, %s, %s, {_EPOCH})"
            " ON CONFLICT (platform, chat_id, name) DO UPDATE SET value = EXCLUDED.value,"
            " changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at",
            [chat.platform, chat.chat_id, name, _text(value), _text(changed_by)])

    async def stats(self) -> StoreStats:
        row = await self._row(
            "SELECT (SELECT COUNT(*) FROM threads),"
            " (SELECT COUNT(*) FROM turns),"
            " (SELECT COUNT(*) FROM turns WHERE role = 'model'),"
            " (SELECT COUNT(*) FROM turns WHERE status = 'failed'),"
            " (SELECT COUNT(*) FROM turns WHERE status = 'undelivered'),"
            " (SELECT COUNT(*) FROM images),"
            " (SELECT COALESCE(SUM(size), 0) FROM images),"
            " (SELECT COUNT(DISTINCT (platform, user_id)) FROM usage),"
            " (SELECT COUNT(*) FROM usage),"
            " (SELECT COUNT(*) FROM usage WHERE NOT ok),"
            f" (SELECT COUNT(*) FROM inbox WHERE status IN {_UNFINISHED})"
        )
        assert row is not None
        return StoreStats(*(int(v) for v in row))

    # ------------------------------------------------------------------ the inbox
    async def inbox_add(self, event: Incoming, *, lane: str) -> tuple[InboxEntry, bool]:
        key = [event.chat.platform, event.chat.chat_id, _text(event.message_id)]
        row = await self._row(_ADD_EVENT, {
            "platform": key[0], "chat_id": key[1], "message_id": key[2], "lane": _text(lane),
            "group_id": _text(event.group_id), "event": event_json(event),
        })
        if row is not None:
            return entry_from_row(row), True
        existing = await self._row(
            f"SELECT {_INBOX} FROM inbox WHERE platform = %s AND chat_id = %s"
            " AND message_id = %s", key)
        if existing is None:  # pruned between the two statements: store it afresh
            return await self.inbox_add(event, lane=lane)
        return entry_from_row(existing), False

    async def inbox_claim(self, owner: str, *, limit: int, lease_seconds: float,
                          platforms: Sequence[str]) -> list[InboxEntry]:
        rows = await self._rows(_CLAIM, {"owner": owner, "lease": lease_seconds,
                                         "limit": limit, "platforms": list(platforms)})
        entries: list[InboxEntry] = []
        for row in sorted(rows, key=lambda r: int(r[0])):
            try:
                entries.append(entry_from_row(row))
            except Exception as exc:  # a record no code can read must not block its lane
                log.error("inbox entry %s is unreadable (%s); marked failed", row[0], exc)
                await self.inbox_finish([row[0]], status=InboxStatus.FAILED,
                                        error=f"unreadable record: {exc}")
        return entries

    async def inbox_renew(self, owner: str, *, lease_seconds: float) -> None:
        await self._rows(
            f"UPDATE inbox SET lease_until = {_EPOCH} + %s"
            " WHERE owner = %s AND status = 'processing'", [lease_seconds, owner])

    async def inbox_release(self, owner: str, entry_ids: Sequence[int] | None = None) -> None:
        if entry_ids is None:
            await self._settle()  # a claim whose caller was cancelled may still be landing
        await self._rows(
            "UPDATE inbox SET lease_until = 0, owner = NULL"
            " WHERE owner = %(owner)s AND status = 'processing'"
            " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))"
            f" RETURNING {_NOTIFY}",
            {"owner": owner, "ids": list(entry_ids) if entry_ids is not None else None})

    async def inbox_join_group(self, entry: InboxEntry, owner: str, *,
                               lease_seconds: float) -> list[InboxEntry]:
        if entry.event.group_id is None:
            return [entry]
        rows = await self._rows(
            f"UPDATE inbox SET status = 'processing', owner = %(owner)s,"
            f" lease_until = {_EPOCH} + %(lease)s"
            f" WHERE lane = %(lane)s AND group_id = %(group)s AND status IN {_UNFINISHED}"
            " AND (id = %(id)s OR owner IS NULL OR owner = %(owner)s"
            f" OR lease_until < {_EPOCH}) RETURNING {_INBOX}",
            {"owner": owner, "lease": lease_seconds, "lane": entry.lane,
             "group": entry.event.group_id, "id": entry.id},
        )
        members = sorted(rows, key=lambda r: int(r[0]))
        return [entry if r[0] == entry.id else entry_from_row(r) for r in members]

    async def inbox_group_latest(self, lane: str, group_id: str) -> float:
        row = await self._row(
            "SELECT MAX(received_at) FROM inbox WHERE lane = %s AND group_id = %s",
            [lane, group_id])
        return float(row[0] or 0.0) if row else 0.0

    async def inbox_mark_call_started(self, entry_id: int, *, owner: str) -> bool:
        rows = await self._rows(
            "UPDATE inbox SET call_started = true"
            " WHERE id = %s AND owner = %s AND status = 'processing' RETURNING id",
            [entry_id, owner])
        return bool(rows)

    async def inbox_linked_turns(self, entry_id: int) -> list[LinkedTurn]:
        rows = await self._rows(
            "SELECT turn_id, call_started FROM inbox_turns WHERE entry_id = %s"
            " ORDER BY position", [entry_id])
        return [LinkedTurn(int(turn_id), bool(started)) for turn_id, started in rows]

    async def inbox_mark_linked_call_started(self, entry_id: int, turn_id: int, *,
                                             owner: str) -> bool:
        rows = await self._rows(
            "UPDATE inbox_turns t SET call_started = true"
            " FROM inbox i WHERE t.entry_id = %s AND t.turn_id = %s AND i.id = t.entry_id"
            " AND i.owner = %s AND i.status = 'processing' RETURNING t.turn_id",
            [entry_id, turn_id, owner])
        return bool(rows)

    async def inbox_finish(self, entry_ids: Sequence[int], *, status: InboxStatus,
                           error: str | None = None) -> None:
        if entry_ids:
            await self._rows(_FINISH, {"status": status.value, "error": _text(error),
                                       "done": list(entry_ids)})

    async def inbox_waiting_before(self, lane: str, entry_id: int) -> int:
        row = await self._row(
            f"SELECT COUNT(*) FROM inbox WHERE lane = %s AND id < %s"
            f" AND status IN {_UNFINISHED}", [lane, entry_id])
        return int(row[0]) if row else 0

    async def inbox_backlog(self) -> int:
        row = await self._row(f"SELECT COUNT(*) FROM inbox WHERE status IN {_UNFINISHED}")
        return int(row[0]) if row else 0

    async def inbox_oldest_stuck(self) -> float | None:
        row = await self._row(
            "SELECT MIN(received_at) FROM inbox WHERE status = 'received' AND lane NOT IN"
            " (SELECT lane FROM inbox WHERE status = 'processing')")
        return float(row[0]) if row and row[0] is not None else None

    async def inbox_lane_active(self, lane: str) -> bool:
        row = await self._row(
            f"SELECT 1 FROM inbox WHERE lane = %s AND status IN {_UNFINISHED} LIMIT 1",
            [lane])
        return row is not None

    async def inbox_get(self, entry_id: int) -> InboxEntry | None:
        row = await self._row(f"SELECT {_INBOX} FROM inbox WHERE id = %s", [entry_id])
        return entry_from_row(row) if row else None

    async def inbox_prune(self, *, older_than: float) -> int:
        rows = await self._rows(
            "DELETE FROM inbox WHERE finished_at IS NOT NULL AND received_at < %s"
            " RETURNING 1", [older_than])
        return len(rows)

    # ------------------------------------------------------------------ operations
    async def schema_version(self) -> int:
        row = await self._row("SELECT COALESCE(MAX(version), 0) FROM chatbrush_migrations")
        return int(row[0]) if row else 0


# ---------------------------------------------------------------------- helpers
async def migrate(conninfo: str) -> int:
    """Apply the migrations this database lacks, in one transaction under an advisory
    lock: of several processes starting at once, one migrates and the others wait and
    find nothing left to do. Returns the schema version."""
    async with await psycopg.AsyncConnection.connect(
        conninfo, connect_timeout=int(CONNECT_TIMEOUT)
    ) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS chatbrush_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cursor = await conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM chatbrush_migrations")
        row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO chatbrush_migrations (version) VALUES (%s)",
                               [number])
            log.info("database schema migrated to version %d", number)
            version = number
    return version


def _turn_statement(thread_id: int, *, parent_id: int | None, role: Role,
                    parts: Sequence[NewPart], author_id: str, author_name: str,
                    status: TurnStatus, error: str | None, move_head: bool,
                    event_id: int | None) -> tuple[str, dict[str, Any], tuple[StoredPart, ...]]:
    """The statement that writes one turn (see :data:`_ADD_TURN`), its parameters, and the
    parts as they will be stored (pictures by their SHA-256)."""
    stored: list[StoredPart] = []
    new_images: dict[str, NewImage] = {}
    for part in parts:
        ref = part.image
        if isinstance(ref, NewImage):
            sha = hashlib.sha256(ref.data).hexdigest()
            new_images[sha] = ref
            ref = ImageRef(sha, ref.mime_type, ref.width, ref.height, len(ref.data))
        stored.append(StoredPart(part.text, ref, part.thought, part.thought_signature,
                                 dict(part.extra or {})))
    params: dict[str, Any] = {
        "thread_id": thread_id, "parent_id": parent_id, "role": Role(role).value,
        "status": status.value, "author_id": _text(author_id),
        "author_name": _text(author_name), "parts": dump_parts(stored),
        "error": _text(error), "move_head": move_head, "event_id": event_id,
        "counts": 1 if role == Role.MODEL else 0,
        "refs": sorted({p.image.sha256 for p in stored if p.image is not None}),
    }
    # one order for every writer: two turns sharing pictures cannot deadlock
    for n, sha in enumerate(sorted(new_images)):
        image = new_images[sha]
        params |= {f"sha{n}": sha, f"mime{n}": image.mime_type, f"width{n}": image.width,
                   f"height{n}": image.height, f"size{n}": len(image.data),
                   f"data{n}": image.data}
    return _add_turn_sql(len(new_images)), params, tuple(stored)


def _settled(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a statement nobody waits for any more (no "never
    retrieved" warnings); the caller that was cancelled has moved on."""
    if not task.cancelled():
        task.exception()


_FORGOTTEN_PARTS = (StoredPart(text=REMOVED_BY_AUTHOR),)


async def _scrub_events(conn: AsyncConnection[Any], platform: str, user_id: str,
                        chat_id: str | None, handling: Sequence[int]) -> int:
    """Rewrite the inbox records :func:`storage.records.forgotten_events` names."""
    cursor = await conn.execute(
        f"SELECT id, event, status NOT IN {_UNFINISHED} FROM inbox"
        " WHERE platform = %(platform)s AND (%(chat)s::text IS NULL OR chat_id = %(chat)s)",
        {"platform": platform, "chat": chat_id})
    rows = [(row[0], row[1], bool(row[2])) for row in await cursor.fetchall()]
    changed = forgotten_events(rows, user_id, handling=handling)
    for entry_id, record in changed.items():
        await conn.execute("UPDATE inbox SET event = %s WHERE id = %s", [record, entry_id])
    return len(changed)


async def _drop_unused_images(conn: AsyncConnection[Any], shas: Collection[str]
                              ) -> tuple[int, int]:
    """Delete those of ``shas`` no turn refers to any more: (how many, their size)."""
    if not shas:
        return 0, 0
    cursor = await conn.execute(
        "DELETE FROM images i WHERE sha256 = ANY(%s::text[])"
        " AND NOT EXISTS (SELECT 1 FROM turn_images t WHERE t.sha256 = i.sha256)"
        " RETURNING size", [sorted(shas)])
    sizes = [int(row[0]) for row in await cursor.fetchall()]
    return len(sizes), sum(sizes)


def _scope(scope: SpendScope, chat: ChatKey, user_id: str) -> tuple[str, list[Any]]:
    """The WHERE clause (for ``usage`` and ``spend_reservations``) of a spend scope."""
    if scope is SpendScope.USER:
        return "platform = %s AND user_id = %s", [chat.platform, user_id]
    if scope is SpendScope.CHAT:
        return "platform = %s AND chat_id = %s", [chat.platform, chat.chat_id]
    return "true", []


def _finishing(done_event: int | None) -> dict[str, Any]:
    """The parameters of :data:`_FINISH` for "finish this event too" (or none)."""
    return {"status": InboxStatus.DONE.value, "error": None,
            "done": [done_event] if done_event is not None else []}


def _text(value: str | None) -> str | None:
    """Text PostgreSQL accepts: no NUL characters and no lone surrogates (SQLite takes
    both; names from a platform can carry them)."""
    if value is None:
        return None
    return _SURROGATE_OR_NUL.sub("\ufffd", value)


def _conninfo_params(url: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` for messages: where, never the password."""
    params = _conninfo_params(url)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"{user}{host}:{port}/{params.get('dbname') or ''}"


def _reason(exc: BaseException, password: str | None) -> str:
    """The first line of a driver error, with the password masked should it appear."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if password:
        text = text.replace(password, "[secret]")
    return text


async def open_store(url: str, settings: Settings | None = None) -> Store:
    """The ``chatbrush.stores`` entry point for ``postgresql://`` and ``postgres://``
    (typed as the port, so mypy checks that the store implements all of it)."""
    pool_size = settings.chatbrush_db_pool_size if settings is not None else 10
    started = time.monotonic()
    store = await PostgresStore.open(url, pool_size=pool_size)
    log.info("using PostgreSQL %s (pool of up to %d connections, opened in %.0f ms)",
             store.label, pool_size, (time.monotonic() - started) * 1000)
    return store
