"""Messages per second with 1, 2 and 4 processes on one PostgreSQL database, against one
process on SQLite; and how many database round trips a turn costs.

Each process is the real core (store, engine, intake — what ``chatbrush web`` runs
behind its adapters) with a stand-in platform that sends nowhere and a stand-in model
that answers with a photographic 1024² PNG (about 1.3 MB, what Gemini sends back) at
once or after ``--latency`` seconds. Chats are spread over the processes as a sticky load
balancer would (each chat's messages reach one process, in order); every process then
takes work from the one shared inbox, whoever received it. A run is timed from the
moment every process starts receiving until the database says every message is done.

Round trips are counted two ways: every Store call each process makes (each is one
statement, one round trip, on PostgreSQL), per message; and the transactions PostgreSQL
committed in the run (``pg_stat_database.xact_commit``), per message.

The PostgreSQL server is a throw-away cluster started here (Debian's server binaries) with
its default durability (``fsync``, ``synchronous_commit`` on); SQLite runs WAL with
``synchronous=NORMAL`` and image files fsynced (``storage/blobs.py``). Content
Credentials are off: they cost the same per picture on either store.

    .venv/bin/python bench/bench_scaling.py                  # ~4 min -> bench/results/scaling.md
    .venv/bin/python bench/bench_scaling.py --quick          # tiny, no results file
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from bench_context import machine_facts  # noqa: E402
from stand_ins import photo  # noqa: E402

from bot.app.runtime import open_store  # noqa: E402
from bot.core.config import Settings  # noqa: E402
from bot.core.events import (  # noqa: E402
    Attachment,
    AttachmentKind,
    ChatKey,
    Incoming,
    InputImage,
    Progress,
    Sender,
)
from bot.core.store import Store  # noqa: E402
from bot.flow.intake import Intake  # noqa: E402
from bot.flow.router import Router  # noqa: E402
from bot.flow.turns import TurnService  # noqa: E402
from bot.kit.image_types import OutputImage  # noqa: E402
from bot.models.base import Blob, GenerateRequest, GenerateResult, Part, Usage  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scaling.md"


# ---------------------------------------------------------------------- one process
class PictureModel:
    """Answers every request with the same photographic PNG, after ``latency`` s."""

    name = "gemini-2.5-flash-image"  # priced like it: budgets run as they would
    max_input_images = 3

    def __init__(self, png: bytes, latency: float) -> None:
        self.png = png
        self.latency = latency

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return GenerateResult(parts=(Part(text="done"), Part(image=Blob("image/png", self.png))),
                              usage=Usage(100, 1290, 1390), model_version="stand-in")

    async def aclose(self) -> None:
        return None


class NullChannel:
    """A chat that takes every message at once (the platform is not what is measured)."""

    def __init__(self) -> None:
        self.next_id = 1_000_000

    async def _ids(self, n: int) -> list[str]:
        self.next_id += n
        return [str(self.next_id - i) for i in range(n)]

    async def send_text(self, text: str) -> list[str]:
        return await self._ids(1)

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None,
                          *, as_files: bool = False) -> list[str]:
        return await self._ids(len(images))

    async def progress(self, state: Progress) -> None:
        return None

    async def is_admin(self, sender: Sender) -> bool:
        return False


class NullPlatform:
    name = "telegram"

    def __init__(self) -> None:
        self.channels: dict[ChatKey, NullChannel] = {}

    def channel(self, event: Incoming) -> NullChannel:
        return self.channels.setdefault(event.chat, NullChannel())

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        return [InputImage(attachment.data or b"", "image/jpeg")]

    async def language_of(self, sender: Sender) -> str | None:
        return None


class CountingStore:
    """The store, counting each call by name (one call is one round trip on PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name in ("wait_for_inbox", "close"):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            started = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return counted


def messages_for(index: int, processes: int, chats: int, per_chat: int,
                 picture: bytes) -> list[Incoming]:
    """This process's share: every ``processes``-th chat, each chat's messages in order."""
    events = []
    for chat in range(index, chats, processes):
        for k in range(per_chat):
            attachments = (Attachment(AttachmentKind.IMAGE, ref=f"p{chat}", size=len(picture),
                                      data=picture),) if k == 0 else ()
            events.append(Incoming(
                chat=ChatKey("telegram", str(10_000 + chat)), message_id=str(k + 1),
                sender=Sender(str(chat), f"user {chat}"), text=f"edit {k} of chat {chat}",
                attachments=attachments, is_private=True))
    return events


async def worker(args: argparse.Namespace) -> None:
    """One process: ready → (stdin "go") receive its share → SIGTERM → print its counts."""
    settings = Settings(**json.loads(args.settings))
    store = CountingStore(await open_store(settings))
    model = PictureModel(args.answer_bytes, args.latency)
    turns = TurnService(store, model, settings)  # type: ignore[arg-type]
    intake = Intake(store, Router(turns), settings)  # type: ignore[arg-type]
    platform = NullPlatform()
    intake.register(platform)  # type: ignore[arg-type]
    await intake.start()
    events = messages_for(args.index, args.of, args.chats, args.per_chat, photo(256))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    receiving = store.calls.copy()
    by_chat: dict[ChatKey, list[Incoming]] = {}
    for event in events:
        by_chat.setdefault(event.chat, []).append(event)

    async def chat(messages: list[Incoming]) -> None:
        for event in messages:  # a chat's messages one after another, as a platform sends
            await intake.receive(event)

    await asyncio.gather(*(chat(m) for m in by_chat.values()))
    received = store.calls - receiving
    await stop.wait()
    await intake.stop(grace=5)
    await store.close()
    print(json.dumps({"calls": dict(store.calls), "receive": dict(received),
                      "seconds": dict(store.seconds)}), flush=True)


# ---------------------------------------------------------------------- the runs
class Done:
    """How many of the run's messages are finished, read from the database itself (on
    PostgreSQL through one autocommit connection whose own statements are counted, so
    they can be left out of the server's commit count)."""

    def __init__(self, url: str | None, sqlite_path: Path | None) -> None:
        self.sqlite_path = sqlite_path
        self.conn = psycopg.connect(url, autocommit=True) if url is not None else None
        self.statements = 0

    def counts(self) -> tuple[int, int]:
        if self.conn is not None:
            self.statements += 1
            row = self.conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status IN ('done', 'failed'))"
                " FROM inbox").fetchone()
        else:
            assert self.sqlite_path is not None
            with sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT count(*), coalesce(sum(status IN ('done',"
                                   " 'failed')), 0) FROM inbox").fetchone()
        if row is None:
            return 0, 0
        return int(row[0]), int(row[1])

    def model_calls(self) -> int:
        """Model calls recorded (each message must have made one)."""
        query = "SELECT count(*) FROM usage"
        if self.conn is not None:
            self.statements += 1
            row = self.conn.execute(query).fetchone()
        else:
            assert self.sqlite_path is not None
            with sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True) as conn:
                row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def commits(self) -> int:
        """Transactions committed in this database so far, less this reader's own."""
        if self.conn is None:
            return 0
        self.statements += 1
        row = self.conn.execute("SELECT xact_commit FROM pg_stat_database"
                                " WHERE datname = current_database()").fetchone()
        return (int(row[0]) if row else 0) - self.statements

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def run(backend: str, processes: int, latency: float, *, chats: int, per_chat: int,
              answer: Path, database: str, workdir: Path) -> dict[str, Any]:
    total = chats * per_chat
    values: dict[str, Any] = {"chatbrush_c2pa": False, "chatbrush_shutdown_grace": 5.0}
    if backend == "postgres":
        values["database_url"] = database
        done = Done(database, None)
    else:
        values["chatbrush_db"] = database
        done = Done(None, Path(database))
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", "--index", str(n), "--of", str(processes),
        "--chats", str(chats), "--per-chat", str(per_chat), "--latency", str(latency),
        "--answer", str(answer), "--settings", json.dumps(values),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) for n in range(processes)]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.strip() == b"ready", line
    commits_before = done.commits()
    started = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    last_report = started
    while True:
        stored, finished = done.counts()
        if stored == total and finished == total:
            break
        if time.monotonic() - last_report > 5:
            print(f"  … {finished}/{total} done", file=sys.stderr)
            last_report = time.monotonic()
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    model_calls = done.model_calls()
    if model_calls != total:
        raise SystemExit(f"{model_calls} model calls for {total} messages: a run that "
                         "skipped work is no measurement")
    calls: Counter[str] = Counter()
    receive: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        counts = json.loads(out.decode().strip().splitlines()[-1])
        calls.update(counts["calls"])
        receive.update(counts["receive"])
        seconds.update(counts["seconds"])
    # server processes report their counts as they end, just after the workers
    await asyncio.sleep(1.5)
    commits = done.commits() - commits_before
    done.close()
    return {"backend": backend, "processes": processes, "latency": latency,
            "messages": total, "seconds": elapsed, "per_second": total / elapsed,
            "calls": calls, "receive": receive, "call_seconds": seconds, "commits": commits}


def markdown(results: list[dict[str, Any]], command: str, machine: str, setup: str) -> str:
    lines = [f"## {setup}", "",
             f"Command: `{command}`", "", f"Machine: {machine}", "",
             "| model | store | processes | messages | seconds | messages/s | store calls"
             " per message | PostgreSQL commits per message |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        calls = sum(r["calls"].values()) / r["messages"]
        commits = f"{r['commits'] / r['messages']:.1f}" if r["backend"] == "postgres" else "—"
        lines.append(f"| {r['latency']:g} s | {r['backend']} | {r['processes']} |"
                     f" {r['messages']} | {r['seconds']:.1f} | {r['per_second']:.1f} |"
                     f" {calls:.1f} | {commits} |")
    sample = next((r for r in results if r["backend"] == "postgres" and r["latency"] == 0),
                  results[0])
    lines += ["", f"Store calls per message, by call ({sample['backend']},"
              f" {sample['processes']} process(es), zero-latency model):", "",
              "| call | per message | of which on receiving | mean ms (waiting for a"
              " connection included) |", "| --- | --- | --- | --- |"]
    for name, count in sorted(sample["calls"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| `{name}` | {count / sample['messages']:.2f} |"
                     f" {sample['receive'].get(name, 0) / sample['messages']:.2f} |"
                     f" {1000 * sample['call_seconds'].get(name, 0) / count:.1f} |")
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    return ", ".join(f"{k} {v}" for k, v in machine_facts().items())


async def main_async(args: argparse.Namespace) -> str:
    from tests.postgres_server import PostgresServer, server_binaries

    binaries = server_binaries()
    if binaries is None:
        print("PostgreSQL server binaries are not installed (apt-get install postgresql)",
              file=sys.stderr)
        raise SystemExit(2)
    server = PostgresServer(binaries, durable=True,
                            settings=[f"synchronous_commit={args.synchronous_commit}"])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chatbrush-scaling-") as tmp:
        workdir = Path(tmp)
        answer = workdir / "answer.png"
        from bench_storage import photo_png

        answer.write_bytes(photo_png(args.answer_side))
        print(f"answer picture: {answer.stat().st_size / 1e6:.2f} MB; starting PostgreSQL",
              file=sys.stderr)
        server.start()
        try:
            for latency in args.latencies:
                chats, per_chat = ((args.slow_chats, 1) if latency else
                                   (args.chats, args.per_chat))
                runs = [("sqlite", 1)] + [("postgres", n) for n in args.processes]
                for backend, processes in runs:
                    database = (server.fresh_database() if backend == "postgres"
                                else str(workdir / f"sqlite-{latency}-{processes}.db"))
                    print(f"{backend} × {processes}, model {latency:g} s:"
                          f" {chats * per_chat} messages", file=sys.stderr)
                    result = await run(backend, processes, latency, chats=chats,
                                       per_chat=per_chat, answer=answer, database=database,
                                       workdir=workdir)
                    print(f"  {result['per_second']:.1f} messages/s", file=sys.stderr)
                    results.append(result)
        finally:
            server.stop()
    command = "python " + " ".join(["bench/bench_scaling.py", *sys.argv[1:]])
    return markdown(results, command, machine_description(),
                    f"PostgreSQL: synchronous_commit={args.synchronous_commit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=100, help="zero-latency runs: chats")
    parser.add_argument("--per-chat", type=int, default=10, help="zero-latency runs: "
                        "messages per chat")
    parser.add_argument("--slow-chats", type=int, default=1000,
                        help="runs with a slow model: chats, one message each")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 5.0])
    parser.add_argument("--answer-side", type=int, default=1024)
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on",
                        help="PostgreSQL's synchronous_commit: on waits for the WAL on disk "
                        "at every commit; off is SQLite's synchronous=NORMAL guarantee")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no results file")
    parser.add_argument("--out", type=Path, default=None)
    # a worker process (started by the runs above)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--answer", default="", help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.answer_bytes = Path(args.answer).read_bytes()
        asyncio.run(worker(args))
        return 0
    if args.quick:
        args.chats, args.per_chat, args.slow_chats = 4, 3, 8
        args.latencies, args.answer_side = [0.0, 0.2], 256
    text = asyncio.run(main_async(args))
    print(text)
    if args.out or not args.quick:
        Path(args.out or RESULTS).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
