"""What is particular to the PostgreSQL backend: several processes on one database.

Every test runs against the real server of :mod:`tests.postgres_server`. Separate
:class:`PostgresStore` instances (each with its own pool and listener) stand in for
separate processes; ``tests/test_postgres_processes.py`` runs real ones.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from bot.app.runtime import Runtime, open_runtime, open_store
from bot.core.config import Settings, SettingsError, load_settings
from bot.core.events import ChatKey, Incoming, Sender
from bot.core.ports.inbox import InboxEntry, InboxStatus
from bot.core.ports.threads import NewImage, NewPart
from bot.core.threads import Role, TurnStatus
from bot.kit.image_types import OutputImage
from bot.kit.logs import RedactSecrets, secret_values
from storage.postgres import DatabaseUnavailable, PostgresStore, migrate
from storage.postgres_schema import MIGRATIONS
from tests.fakes.gemini import FakeGemini
from tests.harness import (
    Chat,
    RecordingChannel,
    RecordingPlatform,
    fast_model,
    photo,
    running_bot,
    settings_for,
)
from tests.postgres_server import PostgresServer, shared_server

CHAT = ChatKey("telegram", "42")
PLATFORMS = ("telegram",)


@pytest.fixture
def server() -> PostgresServer:
    return shared_server()


@pytest.fixture
async def processes(server: PostgresServer) -> AsyncIterator[Callable[[int], Awaitable[
        list[PostgresStore]]]]:
    """Open ``n`` stores on one fresh database, as ``n`` processes would."""
    stack = AsyncExitStack()
    url = server.fresh_database()

    async def open_many(n: int, **options: Any) -> list[PostgresStore]:
        stores = await asyncio.gather(*(PostgresStore.open(url, **options) for _ in range(n)))
        for store in stores:
            stack.push_async_callback(store.close)
        return list(stores)

    yield open_many
    await stack.aclose()
    server.give_back(url)


def message(n: int, *, chat: ChatKey = CHAT, text: str = "draw") -> Incoming:
    return Incoming(chat=chat, message_id=str(n), sender=Sender("7", "Ann"), text=text)


# ---------------------------------------------------------------------- the work queue
async def test_many_processes_never_take_the_same_event_and_keep_each_lane_in_order(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    stores = await processes(6)
    lanes = [f"telegram:{n}" for n in range(40)]
    added: list[InboxEntry] = []
    for n in range(400):
        entry, _ = await stores[n % 6].inbox_add(
            message(n, chat=ChatKey("telegram", str(n % 40))), lane=lanes[n % 40])
        added.append(entry)
    running: set[str] = set()
    handled: dict[str, list[int]] = {lane: [] for lane in lanes}
    taken: list[int] = []

    async def worker(number: int, store: PostgresStore) -> None:
        idle = 0
        while idle < 3:
            claimed = await store.inbox_claim(f"p{number}", limit=random.randint(1, 8),
                                              lease_seconds=60, platforms=PLATFORMS)
            idle = 0 if claimed else idle + 1
            for entry in claimed:
                assert entry.lane not in running, "two events of one lane at once"
                running.add(entry.lane)
                taken.append(entry.id)
                handled[entry.lane].append(entry.id)
            await asyncio.sleep(0)  # others claim while these "run"
            for entry in claimed:
                running.discard(entry.lane)
                await store.inbox_finish([entry.id], status=InboxStatus.DONE)

    # two workers per store: more claimers than connections in some pools
    await asyncio.gather(*(worker(n, stores[n % 6]) for n in range(12)))
    assert sorted(taken) == sorted(e.id for e in added)  # each exactly once
    for lane in lanes:
        assert handled[lane] == sorted(handled[lane])  # arrival order within each lane


async def test_a_dead_process_loses_its_claim_when_the_lease_runs_out(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    dead, alive = await processes(2)
    entry, _ = await dead.inbox_add(message(1), lane="L")
    later, _ = await dead.inbox_add(message(2), lane="L")
    [claimed] = await dead.inbox_claim("dead", limit=5, lease_seconds=1, platforms=PLATFORMS)
    thread = await dead.create_thread(CHAT, lane="L")
    user = await dead.add_turn(thread.id, parent_id=None, role=Role.USER,
                               parts=[NewPart(text="draw")], event_id=entry.id)
    assert await dead.inbox_mark_call_started(entry.id, owner="dead")
    assert await alive.inbox_claim("alive", limit=5, lease_seconds=60,
                                   platforms=PLATFORMS) == []  # its lane waits too
    resumed: list[InboxEntry] = []
    async with asyncio.timeout(10):
        while not resumed:  # the other process polls, as its intake does
            await alive.wait_for_inbox(0.2)
            resumed = await alive.inbox_claim("alive", limit=5, lease_seconds=60,
                                              platforms=PLATFORMS)
    [taken_over] = resumed
    assert taken_over.id == claimed.id == entry.id and taken_over.attempts == 2
    assert taken_over.turn_id == user.id and taken_over.call_started  # resumable
    await alive.inbox_finish([entry.id], status=InboxStatus.FAILED)
    [after] = await alive.inbox_claim("alive", limit=5, lease_seconds=60, platforms=PLATFORMS)
    assert after.id == later.id


async def test_one_process_hears_at_once_what_another_stored(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    web, worker = await processes(2)
    await worker.wait_for_inbox(0)  # forget the news of start-up
    listening = asyncio.create_task(worker.wait_for_inbox(30))
    await asyncio.sleep(0)
    await web.inbox_add(message(1), lane="L")
    async with asyncio.timeout(5):  # far sooner than the 30 s it would otherwise wait
        await listening


async def test_version_numbers_stay_unique_when_processes_write_one_thread_at_once(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    stores = await processes(4)
    thread = await stores[0].create_thread(CHAT, lane="L")
    picture = NewImage(b"\x89PNG the same picture", "image/png", 1, 1)

    async def write(store: PostgresStore, n: int) -> int | None:
        turn = await store.add_turn(thread.id, parent_id=None, role=Role.MODEL,
                                    parts=[NewPart(image=picture), NewPart(text=str(n))])
        return turn.version

    versions = await asyncio.gather(*(write(stores[n % 4], n) for n in range(80)))
    assert sorted(v for v in versions if v is not None) == list(range(1, 81))
    stats = await stores[1].stats()
    assert stats.versions == 80 and stats.stored_images == 1
    current = await stores[2].get_thread(thread.id)
    assert current is not None and current.head_id is not None


# ---------------------------------------------------------------------- the schema
async def test_processes_starting_together_migrate_once(server: PostgresServer) -> None:
    url = server.fresh_database(migrated=False)
    assert await asyncio.gather(*(migrate(url) for _ in range(6))) == [len(MIGRATIONS)] * 6
    stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(3)))
    try:
        assert await stores[0].schema_version() == len(MIGRATIONS)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT version FROM chatbrush_migrations").fetchall()
        assert sorted(rows) == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
    finally:
        for store in stores:
            await store.close()


# ---------------------------------------------------------------------- connections
async def test_a_process_holds_at_most_its_pool_plus_one_connection(
    processes: Callable[..., Awaitable[list[PostgresStore]]],
) -> None:
    [store] = await processes(1, pool_size=3)
    entries = [(await store.inbox_add(message(n), lane=f"L{n}"))[0] for n in range(40)]
    # far more concurrent calls than connections: they wait their turn, none fails
    got = await asyncio.gather(*(store.inbox_get(e.id) for e in entries))
    assert [g.id for g in got if g is not None] == [e.id for e in entries]
    with psycopg.connect(shared_server().url("postgres")) as admin:
        [(count,)] = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [store.application_name]).fetchall()
    assert 1 < count <= 3 + 1


async def test_a_lost_connection_is_an_error_the_next_call_recovers_from(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    store, other = await processes(2)
    await store.inbox_add(message(1), lane="L")
    with psycopg.connect(shared_server().url("postgres"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name = %s", [store.application_name])
    with pytest.raises(DatabaseUnavailable) as caught:
        await store.stats()
    assert shared_server().password not in str(caught.value)
    assert await store.inbox_backlog() == 1  # a fresh connection
    # and news from other processes reaches it again (its listener reconnected)
    await store.wait_for_inbox(0)
    listening = asyncio.create_task(store.wait_for_inbox(30))
    await other.inbox_add(message(2), lane="M")
    async with asyncio.timeout(10):
        await listening


# ---------------------------------------------------------------------- settings
def test_database_url_wins_over_the_sqlite_file(tmp_path: Path) -> None:
    settings = Settings(chatbrush_db=str(tmp_path / "bot.db"),
                        database_url=SecretStr(shared_server().fresh_database()))

    async def opened() -> str:
        store = await open_store(settings)
        try:
            return type(store).__name__
        finally:
            await store.close()

    assert asyncio.run(opened()) == "PostgresStore"
    assert not (tmp_path / "bot.db").exists()


def test_database_url_must_be_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter22@db/chatbrush")
    with pytest.raises(SettingsError, match="DATABASE_URL") as caught:
        load_settings()
    assert "hunter22" not in str(caught.value)
    monkeypatch.setenv("DATABASE_URL", "")
    assert load_settings().database_url is None


async def test_an_unreachable_database_is_one_line_without_the_password(
    server: PostgresServer,
) -> None:
    wrong = server.url("postgres").replace(server.password, "not-the-password-123")
    for url in (wrong, f"postgresql://chatbrush:secret-pw-456@127.0.0.1:{_closed_port()}/x"):
        with pytest.raises(SettingsError) as caught:
            await open_store(Settings(database_url=SecretStr(url)))
        line = str(caught.value)
        assert line.startswith("DATABASE_URL: cannot use the PostgreSQL database")
        assert "\n" not in line and "not-the-password-123" not in line
        assert "secret-pw-456" not in line


def test_the_database_password_is_masked_in_logs() -> None:
    settings = Settings(database_url=SecretStr("postgresql://bot:pw-in-url-789@db:5432/bot"))
    redactor = RedactSecrets(secret_values(settings))
    record = logging.LogRecord("x", logging.INFO, __file__, 1,
                               "connecting with password %s", ("pw-in-url-789",), None)
    redactor.filter(record)
    assert "pw-in-url-789" not in record.getMessage()


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------- text and bytes
async def test_text_postgresql_would_refuse_is_stored_cleaned(
    processes: Callable[[int], Awaitable[list[PostgresStore]]],
) -> None:
    [store] = await processes(1)
    thread = await store.create_thread(CHAT, lane="L", created_by="nul\x00name")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="ok \udcff \x00")],
                                author_name="Ann \ud800\x00")
    stored = await store.get_turn(turn.id)
    assert stored is not None and stored.author_name == "Ann \ufffd\ufffd"
    assert stored.text == "ok \udcff \x00"  # parts are JSON: kept exactly


# ---------------------------------------------------------------------- whole processes
class HeldChannel(RecordingChannel):
    """A chat whose picture sends hang, as when a process freezes while sending."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None,
                          *, as_files: bool = False) -> list[str]:
        self.sending.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_another_process_resends_a_stored_answer_without_a_second_model_call(
    tmp_path: Path,
) -> None:
    url = shared_server().fresh_database()
    async with FakeGemini() as fake, AsyncExitStack() as stack:
        settings = settings_for(tmp_path, fake, database_url=url,
                                chatbrush_lease_seconds=2, chatbrush_shutdown_grace=0)
        frozen_platform, live_platform = RecordingPlatform(), RecordingPlatform()
        held = frozen_platform.channels[CHAT] = HeldChannel()
        frozen: Runtime = await stack.enter_async_context(
            running_bot(settings, frozen_platform))
        live: Runtime = await stack.enter_async_context(running_bot(settings, live_platform))
        live.intake.poll_seconds = 0.2  # a lease running out sends no notification
        live_room, live.intake.max_in_flight = live.intake.max_in_flight, 0  # frozen takes it
        receipt = await Chat(frozen, frozen_platform, CHAT, private=True).send(
            "watercolor", photo())
        assert receipt is not None
        async with asyncio.timeout(20):
            await held.sending.wait()
        # the answer is stored and the frozen process hangs sending it: it stops renewing
        for task in frozen.intake._loops:
            task.cancel()
        live.intake.max_in_flight = live_room
        async with asyncio.timeout(20):
            status = await live.intake.wait(receipt)
        assert status is InboxStatus.DONE
        sent = live_platform.channels[CHAT].sent
        assert [s.kind for s in sent] == ["images"] and (sent[0].text or "").startswith("v1")
        assert len(fake.requests) == 1  # the stored answer, not a second call
        answer = await live.store.linked_turn(CHAT, sent[0].ids[0])
        assert answer is not None and answer.status is TurnStatus.OK


async def test_a_message_one_process_stores_is_taken_by_an_idle_one_at_once(
    tmp_path: Path,
) -> None:
    url = shared_server().fresh_database()
    async with FakeGemini() as fake, AsyncExitStack() as stack:
        settings = settings_for(tmp_path, fake, database_url=url)
        web_platform, worker_platform = RecordingPlatform(), RecordingPlatform()
        web: Runtime = await stack.enter_async_context(running_bot(settings, web_platform))
        web.intake.max_in_flight = 0  # it stores what arrives but has no room to run it
        worker: Runtime = await stack.enter_async_context(
            open_runtime(settings, model=fast_model(settings)))
        worker.intake.register(worker_platform)
        worker.intake.poll_seconds = 60  # only the database's notification can wake it
        await worker.intake.start()
        receipt = await Chat(web, web_platform, CHAT, private=True).send("watercolor",
                                                                          photo())
        assert receipt is not None
        async with asyncio.timeout(10):
            assert await worker.intake.wait(receipt) is InboxStatus.DONE
        assert [s.kind for s in worker_platform.channels[CHAT].sent] == ["images"]
        assert web_platform.channels[CHAT].sent == []
