"""Resident memory against the number of stored conversations: it should not grow.

For each count (0, 1,000 and 10,000 by default) a SQLite database is filled with that many
private chats, each holding an editing thread (a photo, an answer with an 8 kB
``thoughtSignature``, a follow-up; small pictures, as only the rows matter here). Then a
fresh process — the bot's runtime as ``chatbrush run`` opens it (``bot.app.runtime``), the
model the production Gemini client with its socket replaced (``bench.stand_ins``,
real-sized answers), the chat platform a stand-in — runs the same work on each database:
``--chats`` new private chats, each a photo and two text edits. Reported: resident memory
after start, at its peak during the turns and after them, and the time per turn.

    python bench/bench_threads.py                              # -> bench/results/threads.md
    python bench/bench_threads.py --threads 0 200 --chats 2 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_context import machine_facts  # noqa: E402
from bench_engine import QuietChannel, QuietPlatform  # noqa: E402
from PIL import Image  # noqa: E402

from bench.process_stats import measured, memory_mb  # noqa: E402
from bench.realistic import photo_jpeg, signature  # noqa: E402
from bench.stand_ins import MODEL, StandInGemini  # noqa: E402
from bot.app.runtime import open_runtime  # noqa: E402
from bot.core.config import Settings  # noqa: E402
from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender  # noqa: E402
from bot.core.store import NewImage, NewPart  # noqa: E402
from storage.sqlite import SqliteDatabase  # noqa: E402

ANN = Sender("7", "Ann")


def small_png(colour: str) -> NewImage:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return NewImage(out.getvalue(), "image/png", 64, 64)


def fill(path: Path, threads: int) -> None:
    """``threads`` private chats, each with a photo, an answer and a follow-up."""
    db = SqliteDatabase(path)
    photo, answer = small_png("teal"), small_png("orange")
    text_signature, image_signature = signature(512), signature(8192)
    started = time.perf_counter()
    try:
        for n in range(threads):
            chat = ChatKey("telegram", str(1_000_000 + n))
            thread = db.create_thread(chat, lane=f"telegram:{chat.chat_id}", created_by="7")
            user = db.add_turn(thread.id, parent_id=None, role="user",
                               parts=[NewPart(image=photo), NewPart(text="make it red")],
                               author_id="7", author_name="Ann")
            model = db.add_turn(thread.id, parent_id=user.id, role="model", parts=[
                NewPart(text="Here it is.", thought_signature=text_signature),
                NewPart(image=answer, thought_signature=image_signature)],
                author_id="bot", author_name=MODEL)
            db.add_turn(thread.id, parent_id=model.id, role="user",
                        parts=[NewPart(text="now a hat")], author_id="7", author_name="Ann")
            db.set_current_thread(chat, thread.id)
            if (n + 1) % 1000 == 0:
                print(f"  filled {n + 1:,}/{threads:,} threads "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        db.close()


async def work(path: Path, chats: int) -> dict[str, Any]:
    """The child's part: open the runtime on ``path``, run the turns, report memory."""
    settings = Settings(_env_file=None, chatbrush_db=str(path),  # type: ignore[call-arg]
                        gemini_model=MODEL)
    photo = photo_jpeg()
    turns_ms: list[float] = []
    async with open_runtime(settings, model=StandInGemini()) as runtime:
        channel = QuietChannel()
        runtime.intake.register(QuietPlatform(channel))
        await runtime.intake.start()
        started_rss, started_anon = memory_mb()
        message_id = 0
        async with measured() as usage:
            for n in range(chats):
                chat = ChatKey("telegram", str(5_000_000 + n))
                for k, text in enumerate(("make it red", "now a hat", "brighter")):
                    message_id += 1
                    incoming = Incoming(
                        chat=chat, message_id=str(message_id), sender=ANN, text=text,
                        attachments=(Attachment(AttachmentKind.IMAGE, data=photo),) if k == 0
                        else (), is_private=True)
                    begun = time.perf_counter()
                    receipt = await runtime.intake.receive(incoming)
                    assert receipt is not None
                    await runtime.intake.wait(receipt)
                    if not channel.last_text.startswith(f"v{k + 1}"):
                        raise RuntimeError(f"chat {n} turn {k + 1}: {channel.last_text!r}")
                    turns_ms.append((time.perf_counter() - begun) * 1000)
        stats = await runtime.store.stats()
    return {
        "rss_start_mb": round(started_rss, 1), "anon_start_mb": round(started_anon, 1),
        "rss_peak_mb": round(usage.rss_peak_mb, 1), "anon_peak_mb": round(usage.anon_peak_mb, 1),
        "rss_after_mb": round(usage.rss_after_mb, 1),
        "turn_p50_ms": round(statistics.median(turns_ms), 1),
        "cpu_ms_per_turn": round(usage.cpu_ms_per(len(turns_ms)), 1),
        "turns": len(turns_ms), "threads_stored": stats.threads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1000, 10000])
    parser.add_argument("--chats", type=int, default=20, help="new chats in the measured work")
    parser.add_argument("--quick", action="store_true", help="no results file unless --out")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(work(args.child, args.chats))))
        return 0
    out = args.out if args.out is not None or args.quick else (
        ROOT / "bench" / "results" / "threads.md")
    rows: list[tuple[int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="chatbrush-threads-") as tmp:
        for count in args.threads:
            path = Path(tmp) / f"threads-{count}.db"
            print(f"bench_threads: {count:,} stored threads", file=sys.stderr, flush=True)
            fill(path, count)
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--chats", str(args.chats)],
                cwd=ROOT, capture_output=True, text=True, check=False)
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append((count, json.loads(child.stdout.strip().splitlines()[-1])))
    lines = ["| stored threads | RSS after start MB | RSS peak during the turns MB (anonymous) "
             "| RSS after MB | turn p50 ms | CPU ms per turn |",
             "|---:|---:|---:|---:|---:|---:|"]
    for count, r in rows:
        lines.append(f"| {count:,} | {r['rss_start_mb']:.0f} | **{r['rss_peak_mb']:.0f}** "
                     f"({r['anon_peak_mb']:.0f}) | {r['rss_after_mb']:.0f} | "
                     f"{r['turn_p50_ms']} | {r['cpu_ms_per_turn']} |")
    table = "\n".join(lines)
    print(table)
    if out is not None:
        facts = machine_facts()
        command = "python bench/bench_threads.py " + " ".join(sys.argv[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join([
            "# Memory against the number of stored conversations", "",
            (__doc__ or "").split("\n\n")[1].replace("\n", " "), "",
            table, "",
            "## Reproduce", "", f"    {command.strip()}", "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".", ""]))
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
