"""What a budget check costs as the month's calls pile up (SQLite).

With spending limits set, every model call first sums what was spent in each scope this
month and today (the bot, the chat, the person) and reserves its estimate, in one
transaction on the database's one writer thread — so its cost is paid by every turn of
every chat. This fills the ``usage`` table with a month of calls spread over 10,000 chats
and 50,000 people, then times ``reserve_spend`` with all five limits (bot monthly, chat
monthly and daily, person monthly and daily), as :class:`bot.policy.budgets.Budgets` asks it.

    .venv/bin/python bench/bench_budgets.py                       # -> bench/results/budgets.md
    .venv/bin/python bench/bench_budgets.py --calls 0 2000 --quick
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_context import machine_facts  # noqa: E402

from bot.core.events import ChatKey  # noqa: E402
from bot.core.store import SpendLimit, SpendScope  # noqa: E402
from bot.policy.budgets import day_start, month_start  # noqa: E402
from storage.sqlite import SqliteDatabase  # noqa: E402

CHATS, PEOPLE = 10_000, 50_000
CALLS = [0, 10_000, 100_000, 300_000]
REPEAT = 200
NOW = time.time()


def limits() -> list[SpendLimit]:
    month, day = month_start(NOW), day_start(NOW)
    huge = 10**15  # never reached: the check runs to the end every time
    return [SpendLimit("bot_monthly", SpendScope.BOT, month, huge),
            SpendLimit("chat_monthly", SpendScope.CHAT, month, huge),
            SpendLimit("user_monthly", SpendScope.USER, month, huge),
            SpendLimit("chat_daily", SpendScope.CHAT, day, huge),
            SpendLimit("user_daily", SpendScope.USER, day, huge)]


def fill(db: SqliteDatabase, calls: int) -> None:
    rng = random.Random(7)
    month = month_start(NOW)
    rows = [("telegram", str(rng.randrange(CHATS)), str(rng.randrange(PEOPLE)), None,
             "gemini-2.5-flash-image", 1, 1, 39_000, month + rng.random() * (NOW - month))
            for _ in range(calls)]
    with db.db.conn:
        db.db.conn.executemany(
            "INSERT INTO usage (platform, chat_id, user_id, thread_id, model, ok, images,"
            " cost_micros, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def time_checks(db: SqliteDatabase, repeat: int) -> list[float]:
    rng = random.Random(11)
    checks = limits()
    samples = []
    for n in range(repeat):
        chat = ChatKey("telegram", str(rng.randrange(CHATS)))
        started = time.perf_counter()
        hit = db.reserve_spend(chat=chat, user_id=str(rng.randrange(PEOPLE)), event_id=n,
                               amount_micros=39_000, calls=1, limits=checks, now=NOW,
                               expires_at=NOW + 600)
        samples.append((time.perf_counter() - started) * 1000)
        assert hit is None
        db.release_spend(n)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=CALLS,
                        help="calls already recorded this month")
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--quick", action="store_true", help="no results file unless --out")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["| calls this month | check p50 ms | p95 ms | max ms |", "|---:|---:|---:|---:|"]
    for calls in args.calls:
        with tempfile.TemporaryDirectory() as tmp:
            db = SqliteDatabase(Path(tmp) / "bot.db")
            print(f"bench_budgets: {calls:,} calls recorded, timing {args.repeat} checks",
                  file=sys.stderr, flush=True)
            fill(db, calls)
            samples = sorted(time_checks(db, args.repeat))
            db.close()
        p95 = samples[int(0.95 * (len(samples) - 1))]
        lines.append(f"| {calls:,} | {statistics.median(samples):.2f} | {p95:.2f} | "
                     f"{samples[-1]:.2f} |")
    table = "\n".join(lines)
    print(table)
    out = args.out or (None if args.quick else ROOT / "bench" / "results" / "budgets.md")
    if out is not None:
        command = "python bench/bench_budgets.py"
        if args.calls != CALLS:
            command += " --calls " + " ".join(map(str, args.calls))
        if args.repeat != REPEAT:
            command += f" --repeat {args.repeat}"
        facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
        out.write_text(
            "# Budget checks against a month of calls\n\n"
            f"{__doc__.split(chr(10) + chr(10))[1]}\n\n{table}\n\n"
            f"## Reproduce\n\n    {command}\n\nMachine: {facts}.\n")
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
