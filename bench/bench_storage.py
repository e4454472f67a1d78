"""Storing real-sized answers: where SQLite's WAL checkpoints land, and what blob files
beside the database would cost instead.

Each turn stores what the engine stores for one edit: a small user turn, then a model
turn holding a photographic 1024×1024 PNG of about 1.3 MB (a new picture every turn, as
an edit makes) with an 8 kB ``thoughtSignature``. Three ways are timed on the same
machine in one run:

* ``in rows``: the bytes in the database with SQLite's default checkpoints — the commit
  that pushes the WAL past 1,000 pages (4 MB) copies it back into the database itself, so
  every third or fourth turn waits;
* ``in rows, background checkpoints``: automatic checkpoints off, a thread beside the
  writer running PASSIVE checkpoints (a prototype, here only);
* ``files``: what ``storage.sqlite`` does — content-addressed files beside the database
  (``storage/blobs.py``: temporary file, fsync, rename, fsync of the folder), the row
  keeping only the hash. ``SqliteStore`` writes the files on worker threads before the
  commit, so the database thread — which every turn's queries share — only spends
  what the last row shows.

    .venv/bin/python bench/bench_storage.py                 # 300 turns each -> results
    .venv/bin/python bench/bench_storage.py --turns 20 --quick
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageFilter  # noqa: E402

from bot.core.events import ChatKey  # noqa: E402
from bot.core.store import NewImage, NewPart  # noqa: E402
from bot.core.threads import ImageRef  # noqa: E402
from storage.sqlite import SqliteDatabase  # noqa: E402

CHAT = ChatKey("telegram", "1")
SIGNATURE = "S" * 8192


def photo_png(side: int = 1024) -> bytes:
    """A photographic-looking PNG of about 1.3 MB at 1024² (what Gemini sends back)."""
    base = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    noise = Image.effect_noise((side, side), 45).convert("RGB")
    tint = Image.new("RGB", (side, side), (90, 140, 60))
    picture = Image.blend(Image.blend(base, tint, 0.5), noise, 0.35).filter(ImageFilter.SMOOTH)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def variant(png: bytes, n: int) -> bytes:
    """The same pixels with a tEXt chunk numbering it: a different file, hash and row."""
    data = f"chatbrush\x00turn {n}".encode()
    chunk = len(data).to_bytes(4, "big") + b"tEXt" + data
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    return png[:-12] + chunk + png[-12:]


class Checkpointer:
    """The rejected alternative: PASSIVE checkpoints from a second connection and thread."""

    def __init__(self, filename: str) -> None:
        self._filename = filename
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._filename, timeout=5, check_same_thread=False)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        wal = Path(self._filename + "-wal")
        while not self._stop.wait(0.05):
            if wal.exists() and wal.stat().st_size >= 4 * 1024 * 1024:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.close()


def run(kind: str, turns: int, png: bytes, workdir: Path) -> dict[str, float]:
    path = workdir / f"{kind.replace(' ', '-').replace(',', '')}.db"
    db = SqliteDatabase(path)
    checkpointer = None
    if not kind.startswith("files"):
        db.blobs = None  # the bytes go into the rows, as before storage/blobs.py
    if kind == "in rows, background checkpoints":
        db.db.execute("PRAGMA wal_autocheckpoint = 0")
        checkpointer = Checkpointer(db.filename)
        checkpointer.start()
    thread = db.create_thread(CHAT, lane="bench")
    parent = None
    times: list[float] = []
    wal_max = 0
    for n in range(turns):
        data = variant(png, n)
        started = time.perf_counter()
        user = db.add_turn(thread.id, parent_id=parent, role="user",
                           parts=[NewPart(text=f"edit number {n}")], move_head=False)
        image: NewImage | ImageRef = NewImage(data, "image/png", 1024, 1024)
        if kind == "files: the database's share" and db.blobs is not None:
            # as SqliteStore does it: the file first, on another thread (not timed here)
            staged_at = time.perf_counter()
            sha = db.blobs.put(data)
            started += time.perf_counter() - staged_at
            image = ImageRef(sha, "image/png", 1024, 1024, len(data))
        model = db.add_turn(thread.id, parent_id=user.id, role="model", parts=[
            NewPart(text="done"), NewPart(image=image, thought_signature=SIGNATURE),
        ])
        times.append((time.perf_counter() - started) * 1000)
        parent = model.id
        wal = Path(db.filename + "-wal")
        wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
        if (n + 1) % 50 == 0:
            print(f"  {kind}: {n + 1}/{turns} turns", file=sys.stderr, flush=True)
    if checkpointer is not None:
        checkpointer.stop()
    integrity = db.db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    median = statistics.median(times)
    ordered = sorted(times)
    return {
        "p50": median,
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
        "slow": sum(1 for t in times if t > 3 * median),
        "wal_mb": wal_max / 1e6,
        "ok": 1.0 if integrity == "ok" else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="no results file unless --out")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    png = photo_png()
    print(f"answer: {len(png) / 1e6:.2f} MB PNG, {len(SIGNATURE)} B signature", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("in rows", "in rows, background checkpoints", "files",
                     "files: the database's share"):
            result = run(kind, args.turns, png, Path(tmp))
            rows.append(
                f"| {kind} | {result['p50']:.1f} | {result['p95']:.1f} | {result['max']:.1f} "
                f"| {int(result['slow'])} | {result['wal_mb']:.1f} "
                f"| {'ok' if result['ok'] else 'FAILED'} |"
            )
    table = "\n".join([
        f"| storing {args.turns} turns | p50 ms | p95 ms | max ms | turns > 3× p50 "
        "| WAL max MB | integrity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
    ])
    print(table)
    out = args.out or (None if args.quick else ROOT / "bench" / "results" / "storage.md")
    if out is not None:
        options = (f" --turns {args.turns}" if args.turns != 300 else "") + (
            " --quick" if args.quick else "")
        load = os.getloadavg()
        out.write_text(
            "# Storing real-sized answers: checkpoints and blob files\n\n"
            f"{__doc__.split(chr(10) + chr(10), 1)[1].split('    .venv')[0].strip()}\n\n"
            f"{table}\n\n"
            "## Reproduce\n\n"
            f"```sh\n.venv/bin/python bench/bench_storage.py{options}\n```\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
            f"load average {load[0]:.1f} at the end.\n"
        )
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
