"""Fair under a crowd: does a flooded group delay anybody else's picture? (issue 18)

One group floods the bot with mentions (``--flood``, from ``--flooders`` members, all
within a second); once the group has had its 20 messages of the minute and more answers
wait for it (``--quiet-after`` seconds later), ``--quiet`` other people, each in their own
private chat, send one photo edit. Reported: each quiet chat's time from its message to its
``sendPhoto``, against the same run with no flood (the quiet baseline), and what the flood
cost: the model calls it made, how many of its messages were kept as refused, and what
the group was sent.

Everything real except the remote ends, with production settings (only the shutdown
grace is short, so the group's backlog is left in the inbox at the end instead of drained
at 20 messages a minute). The Telegram adapter long-polls the fake Bot API, which runs in
**its own process** and enforces Telegram's flood limits as the real service does: 20
messages in any minute for a group, one a second for a person, 30 a second for the bot,
and 429 with ``retry_after`` beyond them. The model is the production Gemini client with
the socket replaced (``bench.stand_ins``), answering real-sized pictures after
``--latency`` seconds.

    .venv/bin/python -m bench.bench_fairness
    .venv/bin/python -m bench.bench_fairness --flood 500 --quiet 20 --latency 5 \
        --out bench/results/fairness.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.telegram.adapter import TelegramAdapter
from bench.bench_telegram import UsersFake, machine
from bench.fake_process import fake_process
from bench.process_stats import load_average
from bench.stand_ins import StandInGemini, pct
from bot.app.runtime import open_runtime
from bot.core.config import load_settings
from tests.fakes.telegram_api import TOKEN

GROUP_ID = -1009990001


# ---------------------------------------------------------------------- the fake's process
class CrowdFake(UsersFake):
    """The fake Bot API, Telegram's flood limits on, plus ``POST /_bench/fair``: a group
    floods the bot, then quiet people each send one photo edit and are timed."""

    def __init__(self) -> None:
        super().__init__(flood_limits=True)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_bench/fair", self._fair)

    async def _fair(self, request: web.Request) -> web.Response:
        spec = await request.json()
        flood, flooders, quiet = int(spec["flood"]), int(spec["flooders"]), int(spec["quiet"])
        group = self.group(GROUP_ID, "Public group")
        members = [self.user(50_000 + n, f"member{n}") for n in range(flooders)]
        started = time.monotonic()
        for n in range(flood):
            self.send(group, members[n % flooders],
                      f"@{self.bot_username} draw a lighthouse {n}")
        flooded_in = time.monotonic() - started
        if flood:
            await asyncio.sleep(float(spec["quiet_after_s"]))
        group_before_quiet = len(self.sent_to(GROUP_ID))
        results = await asyncio.gather(*(self.turn(20_000 + n, None) for n in range(quiet)),
                                       return_exceptions=True)
        times = [r[0] for r in results if isinstance(r, tuple)]
        to_group = self.sent_to(GROUP_ID)
        return web.json_response({
            "quiet_s": times, "quiet_failures": quiet - len(times),
            "flood_sent_in_s": flooded_in, "run_s": time.monotonic() - started,
            "group_photos": sum(1 for m in to_group if "photo" in m),
            "group_texts": [m["text"] for m in to_group if "text" in m],
            "flooded_429": len(self.flooded), "group_before_quiet": group_before_quiet,
        })


async def serve_fake() -> None:
    async with CrowdFake() as fake:
        print(fake.base_url, flush=True)
        await asyncio.Event().wait()


# ---------------------------------------------------------------------- the bot's process
async def one_run(*, flood: int, flooders: int, quiet: int, latency: float,
                  quiet_after: float) -> dict[str, Any]:
    """A fresh bot, database and fake: the flood (if any), then the quiet chats."""
    model = StandInGemini(latency)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        async with fake_process("bench.bench_fairness") as (base_url, _cpu):
            settings = load_settings(telegram_bot_token=TOKEN, telegram_base_url=base_url,
                                     chatbrush_db=str(db), chatbrush_shutdown_grace=1)
            async with open_runtime(settings, model=model) as runtime:
                adapter = TelegramAdapter(settings, runtime.intake)
                runtime.intake.register(adapter)
                await adapter.start(webhook=False)
                await runtime.intake.start()
                spec = {"flood": flood, "flooders": flooders, "quiet": quiet,
                        "quiet_after_s": quiet_after}
                try:
                    async with aiohttp.ClientSession() as http, http.post(
                            f"{base_url}/_bench/fair", json=spec,
                            timeout=aiohttp.ClientTimeout(total=None)) as resp:
                        resp.raise_for_status()
                        result: dict[str, Any] = await resp.json()
                    result["model_calls"] = model.calls
                finally:
                    await adapter.stop_receiving()
                    await runtime.intake.stop(grace=settings.chatbrush_shutdown_grace)
                    await adapter.close()
            result["per_minute"] = settings.chatbrush_user_per_minute
        with sqlite3.connect(db) as conn:
            result["inbox"] = dict(conn.execute(
                "SELECT status, COUNT(*) FROM inbox WHERE chat_id = ? GROUP BY status",
                [str(GROUP_ID)]))
    return result


def summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    return {"p50_s": round(pct(seconds, 50), 2), "p95_s": round(pct(seconds, 95), 2),
            "max_s": round(max(seconds), 2)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    common = {"flooders": args.flooders, "quiet": args.quiet, "latency": args.latency,
              "quiet_after": args.quiet_after}
    progress(f"baseline: {args.quiet} quiet chats, no flood")
    baseline = await one_run(flood=0, **common)
    progress(f"flood: {args.flood} mentions from {args.flooders} members, then "
             f"{args.quiet} quiet chats")
    flooded = await one_run(flood=args.flood, **common)
    calls = flooded["model_calls"] - args.quiet  # every quiet chat makes one
    minutes = max(1, -(-flooded["run_s"] // 60))
    allowed = args.flooders * flooded["per_minute"] * minutes if flooded["per_minute"] else None
    base, crowd = summary(baseline["quiet_s"]), summary(flooded["quiet_s"])
    return {
        "flood": args.flood, "flooders": args.flooders, "quiet": args.quiet,
        "model_latency_s": args.latency,
        "baseline": base, "with_flood": crowd,
        "p95_ratio": round(crowd["p95_s"] / base["p95_s"], 2) if base and crowd else None,
        "quiet_failures": baseline["quiet_failures"] + flooded["quiet_failures"],
        "flood_model_calls": calls, "flood_calls_allowed": allowed,
        "run_s": round(flooded["run_s"], 1),
        "flood_inbox": flooded["inbox"],
        "group_photos": flooded["group_photos"], "group_texts": len(flooded["group_texts"]),
        "group_refusals": sum("faster than allowed" in t for t in flooded["group_texts"]),
        "flooded_429": flooded["flooded_429"],
        "group_messages_before_quiet": flooded["group_before_quiet"],
        "quiet_after_s": args.quiet_after,
        "load_average": load_average(),
    }


def render(r: dict[str, Any]) -> list[str]:
    b, f = r["baseline"], r["with_flood"]
    inbox = ", ".join(f"{v} {k}" for k, v in sorted(r["flood_inbox"].items()))
    return [
        "| run | quiet chats' time to picture p50 / p95 / max s | failures |",
        "|---|---:|---:|",
        f"| no flood (baseline) | {b['p50_s']} / {b['p95_s']} / {b['max_s']} | 0 |",
        f"| {r['flood']} mentions in one group | {f['p50_s']} / **{f['p95_s']}** / "
        f"{f['max_s']} | {r['quiet_failures']} |",
        "",
        f"p95 with the flood / without: **{r['p95_ratio']}×** (target ≤ 2× and under 15 s). "
        f"The quiet chats sent {r['quiet_after_s']} s after the flood, when the group had been "
        f"sent {r['group_messages_before_quiet']} messages (its limit: 20 a minute). "
        f"The flood ({r['flooders']} members, {r['run_s']} s until the last quiet picture): "
        f"**{r['flood_model_calls']} model calls** (the default limits allow "
        f"{r['flood_calls_allowed']}); its inbox rows: {inbox}; the group was sent "
        f"{r['group_photos']} pictures and {r['group_texts']} texts ({r['group_refusals']} "
        f"refusals); 429s from the fake Bot API: {r['flooded_429']}.",
    ]


def progress(text: str) -> None:
    print(f"bench_fairness: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve-fake"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--flood", type=int, default=500, help="mentions in the group")
    parser.add_argument("--flooders", type=int, default=5, help="members sending them")
    parser.add_argument("--quiet", type=int, default=20, help="private chats, one edit each")
    parser.add_argument("--latency", type=float, default=5.0, help="model seconds per call")
    parser.add_argument("--quiet-after", type=float, default=15.0,
                        help="seconds after the flood that the quiet chats send (by 15 s "
                             "the group has had its 20 messages of the minute)")
    parser.add_argument("--json", action="store_true", help="print raw JSON only")
    parser.add_argument("--out", type=Path, default=None,
                        help="append the command, the machine and the table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "serve-fake":
        asyncio.run(serve_fake())
        return 0
    result = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(machine())
    print(json.dumps(result))
    table = render(result)
    print("\n".join(table))
    if args.out is not None:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--out" in given:
            del given[given.index("--out"):given.index("--out") + 2]
        command = " ".join(["python -m bench.bench_fairness", *given])
        with args.out.open("a", encoding="utf-8") as out:
            out.write("\n".join([f"```sh\n{command}\n```", "",
                                 f"Machine: {machine()}; load average at the end "
                                 f"{result['load_average']}.", "", *table, "", ""]))
        print(f"appended to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
