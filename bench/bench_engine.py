"""The engine's own cost per turn on a long private-chat thread, with real-sized answers.

Drives the real :class:`bot.flow.turns.TurnService` behind the router and the intake
(``bot.app.runtime.open_runtime``: a temp-file SQLite database in WAL mode, pictures in blob
files beside it, Content Credentials on as in production) through an editing thread: the
first message carries a photo, the rest are text edits that continue the thread. The
model is the production Gemini client with the socket replaced (``bench.stand_ins``): it
encodes every request and reads a real-sized answer (a distinct photographic 1024² PNG
of 1.3 MB with an 8 kB signature) at once. The chat platform is a stand-in that costs
nothing. So what is timed is the bot's work per turn: the inbox, routing, SQLite, the
context, the model client's encoding and reading, checking and storing the answer,
signing it. Then ``/history`` and ``/undo`` are timed on the finished thread.

Per turn: wall time (``Intake.receive`` until ``Intake.wait`` returns) and the process's
CPU time (every thread). The reference workload (:mod:`bench.realistic`) is timed in the
same process, and CPU per turn is given as a multiple of it. Also reported: how the cost
grows along the thread (turns near the end against turns near 10) and the slowest turn
against the median (checkpoints and other stalls).

    python bench/bench_engine.py                     # 100 turns x 3 runs -> bench/results/engine.md
    python bench/bench_engine.py --turns 300 --runs 1 --out bench/results/engine-300.md
    python bench/bench_engine.py --profile           # plus cProfile and a per-call breakdown
    python bench/bench_engine.py --turns 5 --quick --out /tmp/engine.md
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import hashlib
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_context import machine_facts, make_photo  # noqa: E402

import bot.flow.model_step as engine_module  # noqa: E402
import bot.kit.images as imaging  # noqa: E402
from bench.process_stats import cpu_seconds, rss_mb  # noqa: E402
from bench.realistic import (  # noqa: E402
    SIGNATURE_BYTES,
    AnswerBodies,
    median_ms,
    reference_ms,
    reference_workload,
    signature,
)
from bench.stand_ins import MODEL, StandInGemini  # noqa: E402
from bot.app.runtime import open_runtime  # noqa: E402
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
from bot.flow.turns import GENERIC_FAILURE  # noqa: E402
from bot.kit.image_types import OutputImage  # noqa: E402
from bot.kit.images import inspect_output  # noqa: E402
from bot.models.base import Content, GenerateRequest, Part  # noqa: E402
from bot.models.gemini import parse_answer, request_body  # noqa: E402
from bot.models.http_policy import json_payload  # noqa: E402
from bot.provenance.credentials import ContentCredentials, Ingredient  # noqa: E402
from storage.blobs import BlobFiles  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402

P = ParamSpec("P")
R = TypeVar("R")

CHAT = ChatKey("telegram", "424242")
ANN = Sender("7", "Ann")
INSTRUCTIONS = (
    "make the shirt red", "now add a hat", "a bit brighter please", "remove the lamp post",
    "make the sky more dramatic", "add a small dog on the left", "less saturated",
    "turn it into a watercolor", "crop a little tighter on the face", "sharper, please",
)
#: issue 12's targets
GROWTH_TARGET = 1.2
SPIKE_TARGET = 3.0
CPU_TARGET = 2.0


# --------------------------------------------------------------------------- stand-ins


@dataclass
class QuietChannel:
    """The Channel port at near-zero cost: hands out ids, keeps only counts and last text."""

    next_id: int = 10_000
    texts: int = 0
    images: int = 0
    last_text: str = ""

    def _ids(self, n: int) -> list[str]:
        first = self.next_id
        self.next_id += n
        return [str(first + i) for i in range(n)]

    async def send_text(self, text: str) -> list[str]:
        self.texts += 1
        self.last_text = text
        return self._ids(1)

    max_file_bytes = 50_000_000

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None,
                          *, as_files: bool = False) -> list[str]:
        self.images += len(images)
        self.last_text = caption or ""
        return self._ids(len(images))

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        return self._ids(1)

    async def progress(self, state: Progress) -> None:
        return None

    async def is_admin(self, sender: Sender) -> bool:
        return False


class QuietPlatform:
    """One quiet channel for every event; attachments carry their bytes inline."""

    name = CHAT.platform

    def __init__(self, channel: QuietChannel) -> None:
        self._channel = channel

    def channel(self, event: Incoming) -> QuietChannel:
        return self._channel

    async def fetch(self, attachment: Attachment) -> list[InputImage]:
        return [InputImage(attachment.data or b"")]

    async def language_of(self, sender: Sender) -> str | None:
        return None


# --------------------------------------------------------------------------- a run


class Timers:
    """Wall time of named calls, by wrapping functions in place for the length of a run
    (``--profile``): the store calls, the context builder, the image checks."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, name: str | None = None) -> None:
        original: Callable[..., Any] = getattr(owner, attr)
        label = name or attr

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls[label].append((time.perf_counter() - started) * 1000)

        self._undo.append((owner, attr, owner.__dict__.get(attr, _MISSING)
                           if hasattr(owner, "__dict__") else _MISSING))
        setattr(owner, attr, timed)

    def wrap_store_hops(self, store: SqliteStore) -> None:
        """Time each ``SqliteStore.run`` as awaited: the worker's work plus the thread hop."""
        original = store.run

        async def run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return await original(fn, *args, **kwargs)
            finally:
                name = getattr(fn, "__name__", "?")
                self.calls[f"await store.run({name})"].append(
                    (time.perf_counter() - started) * 1000)

        self._undo.append((store, "run", _MISSING))
        store.run = run  # type: ignore[method-assign]

    def restore(self) -> None:
        for owner, attr, before in reversed(self._undo):
            if before is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, before)
        self._undo.clear()

    def report(self, heading: str) -> list[str]:
        lines = [f"| {heading} | calls | total ms | mean ms | max ms |",
                 "|---|---:|---:|---:|---:|"]
        for name, values in sorted(self.calls.items(), key=lambda kv: -sum(kv[1])):
            lines.append(f"| {name} | {len(values)} | {sum(values):.1f} | "
                         f"{statistics.fmean(values):.3f} | {max(values):.2f} |")
        return lines


_MISSING = object()


@dataclass
class RunResult:
    wall_ms: list[float] = field(default_factory=list)  # turn n at index n-1
    cpu_ms: list[float] = field(default_factory=list)
    history_ms: list[float] = field(default_factory=list)
    undo_ms: list[float] = field(default_factory=list)
    input_images: int = 0
    request_mb: float = 0.0
    rss_mb: float = 0.0


class BenchError(RuntimeError):
    """The engine did not answer as a user would expect: timing it would be meaningless."""


async def run_thread(settings: Settings, photo: bytes, turns: int, *, commands: int,
                     label: str, signature_bytes: int, timers: Timers | None = None
                     ) -> RunResult:
    result = RunResult()
    model = StandInGemini(signature_bytes=signature_bytes)
    try:
        async with open_runtime(settings, model=model) as runtime:
            store = runtime.store
            assert isinstance(store, SqliteStore)
            if timers is not None:
                timers.wrap_store_hops(store)
                timers.wrap(store.sync, "path", "Store.path")
                timers.wrap(store.sync, "image_bytes", "Store.image_bytes")
                timers.wrap(store.sync, "add_turn", "Store.add_turn")
                timers.wrap(engine_module, "build_context", "context.build_context")
                timers.wrap(imaging, "prepare_input")
                timers.wrap(imaging, "inspect_output")
            channel = QuietChannel()
            runtime.intake.register(QuietPlatform(channel))
            await runtime.intake.start()
            message_id = 0

            async def say(text: str, *images: bytes) -> tuple[float, float]:
                nonlocal message_id
                message_id += 1
                incoming = Incoming(
                    chat=CHAT, message_id=str(message_id), sender=ANN, text=text,
                    attachments=tuple(Attachment(AttachmentKind.IMAGE, data=i) for i in images),
                    is_private=True)
                started, started_cpu = time.perf_counter(), cpu_seconds()
                receipt = await runtime.intake.receive(incoming)
                assert receipt is not None
                await runtime.intake.wait(receipt)
                return ((time.perf_counter() - started) * 1000,
                        (cpu_seconds() - started_cpu) * 1000)

            for n in range(1, turns + 1):
                before = channel.images
                wall, cpu = await say(INSTRUCTIONS[(n - 1) % len(INSTRUCTIONS)],
                                      *([photo] if n == 1 else []))
                if channel.images != before + 1 or not channel.last_text.startswith(f"v{n}"):
                    raise BenchError(f"turn {n}: expected image v{n}, got {channel.last_text!r}")
                result.wall_ms.append(wall)
                result.cpu_ms.append(cpu)
                if n % 25 == 0 or n == turns:
                    print(f"  {label}: turn {n:>3}/{turns}  {wall:6.2f} ms wall, "
                          f"{cpu:6.2f} ms CPU", file=sys.stderr, flush=True)
            result.rss_mb = rss_mb()
            for _ in range(commands):
                result.history_ms.append((await say("/history"))[0])
                if f"v{turns}" not in channel.last_text:
                    raise BenchError(f"/history did not list v{turns}: "
                                     f"{channel.last_text[:200]!r}")
            for k in range(min(commands, turns)):
                before = channel.images
                result.undo_ms.append((await say("/undo"))[0])
                if channel.images != before + 1 and "original" not in channel.last_text:
                    raise BenchError(f"/undo {k + 1}: {channel.last_text!r}")
            if channel.last_text == GENERIC_FAILURE:
                raise BenchError("the engine reported an internal failure")
    finally:
        if timers is not None:
            timers.restore()
    result.input_images = max(model.input_images, default=0)
    result.request_mb = max(model.request_bytes, default=0) / 1e6
    return result


# --------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def stats_cells(values: Sequence[float]) -> list[str]:
    if not values:
        return ["-", "-", "-", "-"]
    return [str(len(values)), f"{percentile(values, 50):.2f}", f"{percentile(values, 95):.2f}",
            f"{max(values):.2f}"]


@dataclass
class Summary:
    """The figures issue 12 asks for, from the runs of one command."""

    runs: list[RunResult]
    reference_cpu_ms: float
    reference_wall_ms: float

    def edits(self, attr: str) -> list[float]:
        """Text-edit turns (2..N) of every run."""
        return [v for r in self.runs for v in getattr(r, attr)[1:]]

    def cpu_per_edit(self) -> float:
        return statistics.median(self.edits("cpu_ms"))

    def cpu_ratio(self) -> float:
        return self.cpu_per_edit() / self.reference_cpu_ms

    def window(self, attr: str, last: int) -> float:
        """Median of turns ``last-9 .. last`` (turn 1, the photo, never counts) over runs."""
        first = max(2, last - 9)
        return statistics.median(v for r in self.runs for v in getattr(r, attr)[first - 1:last])

    def growth(self, attr: str, turns: int) -> tuple[float, float, float]:
        """(near turn 10, at the end, end / near 10)."""
        early, late = self.window(attr, min(10, turns)), self.window(attr, turns)
        return early, late, late / early

    def spikes(self) -> tuple[float, float, int]:
        """(median wall ms of edits, slowest edit, edits over 3x the median), worst run."""
        worst = (0.0, 0.0, 0)
        for r in self.runs:
            edits = r.wall_ms[1:]
            if not edits:
                continue
            median = statistics.median(edits)
            over = sum(1 for v in edits if v > SPIKE_TARGET * median)
            if max(edits) / median > worst[1] / max(worst[0], 1e-9):
                worst = (median, max(edits), over)
        return worst


def table(s: Summary) -> list[str]:
    rows = [
        ("text edits (2..N), wall clock", s.edits("wall_ms")),
        ("text edits (2..N), CPU (every thread)", s.edits("cpu_ms")),
        ("turn 1 (a 2560x1920 photo), wall clock", [r.wall_ms[0] for r in s.runs]),
        ("turn 1, CPU", [r.cpu_ms[0] for r in s.runs]),
        ("/history on the finished thread, wall clock",
         [v for r in s.runs for v in r.history_ms]),
        ("/undo, one step at a time from the head, wall clock",
         [v for r in s.runs for v in r.undo_ms]),
    ]
    return ["| what | n | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|",
            *(f"| {name} | " + " | ".join(stats_cells(values)) + " |" for name, values in rows)]


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def headline(s: Summary, turns: int) -> list[str]:
    cpu, ratio = s.cpu_per_edit(), s.cpu_ratio()
    lines = [
        f"- **CPU per text edit: {cpu:.1f} ms = {ratio:.2f}× the reference workload** "
        f"(target ≤ {CPU_TARGET:.0f}×: {verdict(ratio <= CPU_TARGET)}). Reference: "
        f"{s.reference_cpu_ms:.2f} ms CPU ({s.reference_wall_ms:.2f} ms wall), same process.",
    ]
    if turns >= 20:
        for attr, what in (("wall_ms", "wall"), ("cpu_ms", "CPU")):
            early, late, growth = s.growth(attr, turns)
            lines.append(
                f"- Growth along the thread ({what}): median of turns {max(2, turns - 9)}–"
                f"{turns} {late:.1f} ms against turns 2–10 {early:.1f} ms = **{growth:.2f}×** "
                f"(target ≤ {GROWTH_TARGET}×: {verdict(growth <= GROWTH_TARGET)}).")
    median, slowest, over = s.spikes()
    lines.append(
        f"- Slowest text edit {slowest:.1f} ms against the median {median:.1f} ms = "
        f"**{slowest / median:.2f}×**, {over} edit(s) over {SPIKE_TARGET:.0f}× the median "
        f"(worst run; target: none over {SPIKE_TARGET:.0f}×: {verdict(over == 0)}).")
    r = s.runs[-1]
    lines.append(f"- Largest request: {r.input_images} images, {r.request_mb:.1f} MB of JSON; "
                 f"resident memory after the thread {r.rss_mb:.0f} MB.")
    return lines


def along(s: Summary, turns: int) -> str:
    step = max(10, turns // 10)
    marks = sorted({2, *range(10, turns + 1, step), turns} & set(range(2, turns + 1)))
    cells = [f"{n}: {statistics.median(r.wall_ms[n - 1] for r in s.runs):.1f} / "
             f"{statistics.median(r.cpu_ms[n - 1] for r in s.runs):.1f}" for n in marks]
    return "turn: wall / CPU ms — " + ", ".join(cells)


# --------------------------------------------------------------------------- unit costs


def unit_costs(workdir: Path, repeat: int) -> list[tuple[str, float]]:
    """Median CPU ms of the big steps of one text edit, each on its own, in this process:
    the floor under the bot's CPU per turn."""
    answers = AnswerBodies()
    body = answers.next()
    pictures = [parse_answer(answers.next()).images[0] for _ in range(3)]
    png = pictures[0].data
    request = GenerateRequest(tuple(
        Content("user" if i % 2 == 0 else "model",
                (Part(text="make it red"),
                 Part(image=p, thought_signature=signature(SIGNATURE_BYTES))))
        for i, p in enumerate(pictures)))
    blobs = BlobFiles(workdir / "unit-blobs")
    credentials = ContentCredentials(workdir / "unit-c2pa")
    ingredient = Ingredient(pictures[1].data, "image/png",
                            known_sha256=hashlib.sha256(pictures[1].data).hexdigest())
    written = iter(range(10**9))

    def store() -> None:  # a new picture every time, as every edit makes
        blobs.put(png + next(written).to_bytes(8, "big"))

    loop = asyncio.new_event_loop()

    def encode() -> bytes:
        return loop.run_until_complete(json_payload(request_body(request)).read())

    steps: list[tuple[str, Callable[[], object]]] = [
        ("the reference workload (parse one answer body, decode its picture, SHA-256 it)",
         lambda: reference_workload(body)),
        ("model client: lay out and encode a request with three 1024² pictures", encode),
        ("model client: read an answer (JSON, base64, checks)", lambda: parse_answer(body)),
        ("check the answer's picture (`inspect_output`)",
         lambda: inspect_output(png, "image/png")),
        ("store the picture (SHA-256, write, fsync file and folder)", store),
        ("sign it with Content Credentials (one input)",
         lambda: credentials.sign(png, "image/png", model=MODEL, inputs=[ingredient])),
    ]
    try:
        return [(name, median_ms(fn, repeat)[1]) for name, fn in steps]
    finally:
        loop.close()


# --------------------------------------------------------------------------- main


async def run_all(turns: int, runs: int, photo: bytes, workdir: Path, signature_bytes: int,
                  commands: int, *, profile: bool) -> tuple[list[RunResult], str | None]:
    results: list[RunResult] = []
    for rep in range(1, runs + 1):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, chatbrush_db=str(workdir / f"engine-{rep}.db"), gemini_model=MODEL)
        results.append(await run_thread(settings, photo, turns, commands=commands,
                                        label=f"run {rep}/{runs}",
                                        signature_bytes=signature_bytes))
    listing: str | None = None
    if profile:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, chatbrush_db=str(workdir / "engine-profile.db"), gemini_model=MODEL)
        timers = Timers()
        profiler = cProfile.Profile()
        profiler.enable()
        await run_thread(settings, photo, turns, commands=commands, label="profiled",
                         signature_bytes=signature_bytes, timers=timers)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(r"(bot|storage)[/\\]", 12)
        listing = "\n".join([
            "## Where the time goes (one profiled run)", "",
            *timers.report("call (worker-thread wall time unless 'await')"), "",
            "cProfile, event-loop thread only, our modules, by own time:", "", "```",
            out.getvalue().strip(), "```", ""])
    return results, listing


def unit_table(units: Sequence[tuple[str, float]]) -> list[str]:
    reference = units[0][1]
    lines = ["| step, on its own | CPU ms | × reference |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.2f} | {ms / reference:.2f} |" for name, ms in units]
    floor = sum(ms for _, ms in units[1:])
    lines.append(f"| **these five together** | **{floor:.2f}** | **{floor / reference:.2f}** |")
    return lines


def write_markdown(path: Path, s: Summary, turns: int, command: str, seconds: float,
                   signature_bytes: int, listing: str | None,
                   units: Sequence[tuple[str, float]]) -> None:
    facts = machine_facts()
    text = [
        "# Engine cost per turn (real-sized answers, zero-latency model)",
        "",
        "The real `Engine` behind the intake (via `bot.app.runtime.open_runtime`: a temp-file "
        "SQLite database in WAL mode, pictures in blob files beside it, Content Credentials "
        f"on) runs a {turns}-turn private-chat editing thread, {len(s.runs)} time(s), each "
        "on a fresh database. The first message carries a photo-like 2560x1920 JPEG; the "
        "others are text edits that continue the thread. The model is the production "
        "Gemini client with its socket replaced by `httpx.MockTransport` "
        "(`bench/stand_ins.py`): it encodes every request (up to 3 pictures, base64 in "
        "JSON) and reads a real-sized answer — a distinct photographic 1024² PNG of "
        f"1.3 MB with a {signature_bytes:,}-character `thoughtSignature` — at once. The "
        "chat platform is a stand-in that costs nothing. Each sample is one "
        "`await Intake.receive(...)` plus `await Intake.wait(...)`: wall clock, and the "
        "process's CPU time over the same stretch (every thread). The reference workload "
        "— parse one such answer body, base64-decode the picture, SHA-256 it "
        "(`bench/realistic.py`) — is timed in the same process.",
        "",
        *headline(s, turns),
        "",
        *table(s),
        "",
        "Along the thread (median of runs): " + along(s, turns),
        "",
        "Where a text edit's CPU goes: the biggest steps timed on their own in the same "
        "process (median CPU ms). The first two are the model's wire format — a request "
        "carries up to three pictures as base64, an answer one — and together with "
        "storing and signing the new picture they are a floor no scheduling removes:",
        "",
        *unit_table(units),
        "",
        *([listing] if listing else []),
        "## Reproduce",
        "",
        f"    {command}",
        "",
        f"Run took {seconds:.1f} s. Machine: "
        + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=100, help="edits in the thread")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, each a fresh DB")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one run, a smaller photo, no results file unless --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results (default bench/results/engine.md)")
    parser.add_argument("--signature-bytes", type=int, default=SIGNATURE_BYTES,
                        help="thoughtSignature length on each answer image")
    parser.add_argument("--profile", action="store_true", help="also profile one more run")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.runs < 1:
        parser.error("--turns and --runs must be at least 1")
    out: Path | None = args.out
    if out is None and not args.quick:
        out = ROOT / "bench" / "results" / "engine.md"
    runs = 1 if args.quick else args.runs
    commands = 3 if args.quick else 20

    print(f"bench_engine: {args.turns} turns x {runs} run(s), stand-in for {MODEL}",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    reference_wall, reference_cpu = reference_ms()
    photo = make_photo(1600, 1200) if args.quick else make_photo()
    with tempfile.TemporaryDirectory(prefix="chatbrush-bench-") as tmp:
        results, listing = asyncio.run(run_all(
            args.turns, runs, photo, Path(tmp), args.signature_bytes, commands,
            profile=args.profile))
        print("bench_engine: unit costs", file=sys.stderr, flush=True)
        units = unit_costs(Path(tmp), 3 if args.quick else 30)
    seconds = time.perf_counter() - started
    summary = Summary(results, reference_cpu, reference_wall)

    print("\n".join(table(summary)))
    print("\n" + "\n".join(headline(summary, args.turns)))
    print("\n" + along(summary, args.turns))
    print("\n" + "\n".join(unit_table(units)))
    if listing:
        print("\n" + listing)
    if out is not None:
        command = "python bench/bench_engine.py" + "".join(
            flag for flag, on in (
                (f" --turns {args.turns}", args.turns != 100),
                (f" --runs {args.runs}", args.runs != 3 and not args.quick),
                (" --quick", args.quick),
                (f" --signature-bytes {args.signature_bytes}",
                 args.signature_bytes != SIGNATURE_BYTES),
                (" --profile", args.profile),
                (f" --out {args.out}", args.out is not None and not args.quick),
            ) if on)
        write_markdown(out, summary, args.turns, command, seconds, args.signature_bytes,
                       listing, units)
        print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
