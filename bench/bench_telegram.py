"""What one bot process does for Telegram users: CPU per turn, overhead, turns a second.

Everything real except the remote ends. The Telegram adapter with its production settings
(python-telegram-bot's bot on the aiohttp request layer, ``TELEGRAM_CONNECTIONS``, the
flood limiter) long-polls the fake Bot API (``tests/fakes/telegram_api.py``) over loopback
HTTP and commits each update to the intake's inbox before confirming it; the intake runs
the turn (at most ``CHATBRUSH_CONCURRENT_TURNS`` at once), the engine downloads the photo
with ``getFile`` and the file URL, stores turns in a real SQLite file (pictures in blob
files beside it), and the answer goes out with ``sendPhoto`` through the flood limiter.
The model is the production Gemini client with the socket replaced (``bench.stand_ins``):
it encodes each request and reads a real-sized answer (a distinct photographic 1024² PNG,
1.3 MB, with an 8 kB signature). Users send a photo-like 1280×960 JPEG.

The fake Bot API runs in **its own process** and plays the users too: it queues each
message, times it until the ``sendPhoto`` replying to it arrives, and sends the next one.
So this process does only the bot's work, and its CPU time (every thread) divided by the
turns answered is the bot's CPU per turn. The same process times the reference workload
(:mod:`bench.realistic`: parse one answer body, decode its picture, hash it) and gives
CPU per turn as a multiple of it.

* ``overhead``: the model answers at once; new private chats send a photo one after
  another, then one chat sends text follow-ups. Back to back, turns would exceed
  Telegram's 30 messages/s and measure the flood limiter's waiting, so its metering is off
  here (its retries on 429 stay on).
* ``concurrency``: N private chats at once, each a conversation of ``--turns`` edits (each
  waits for its answer before sending the next), with a model that takes ``--latency``
  seconds; the conversations start spread over one model call. Reported: turns a second
  while every conversation is active (and over the whole run), time to the answer (p50,
  p95, max), CPU per turn, and the peak resident memory of the process. With Telegram's
  flood limits on (a real bot) or off (``--no-limiter``: what the process itself can do).

    .venv/bin/python -m bench.bench_telegram overhead --turns 200
    .venv/bin/python -m bench.bench_telegram concurrency --threads 500 --latency 5 --no-limiter
    .venv/bin/python -m bench.bench_telegram concurrency --threads 500 --latency 5
    .venv/bin/python -m bench.bench_telegram concurrency --threads 500 --no-limiter \
        --concurrent-turns 1024       # another CHATBRUSH_CONCURRENT_TURNS than the default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import telegram
from aiohttp import web

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.http import FloodLimiter
from bench.fake_process import fake_process
from bench.process_stats import Usage, load_average, measured
from bench.realistic import photo_jpeg, reference_ms
from bench.stand_ins import StandInGemini, pct
from bot.app.runtime import open_runtime
from bot.core.config import load_settings
from tests.fakes.telegram_api import TOKEN, Call, FakeTelegram

FOLLOW_UP = "and a bit brighter"


def summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in seconds]
    if not ms:
        return {}
    return {"p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1),
            "max_ms": round(max(ms), 1)}


# ---------------------------------------------------------------------- the fake's process
class RecentCalls(list[Call]):
    """The fake's call log, keeping only recent calls: a long run would otherwise hold
    every request (and every uploaded picture) the bot ever made."""

    def append(self, call: Call) -> None:
        super().append(call)
        if len(self) > 2000:
            del self[:1000]


class UsersFake(FakeTelegram):
    """The fake Bot API plus ``POST /_bench/run``: users hold conversations with the bot;
    the answer is every turn's seconds from queueing the message to its ``sendPhoto``."""

    def __init__(self, *, flood_limits: bool = False) -> None:
        super().__init__(flood_limits=flood_limits)  # bench_fairness enforces them
        self.calls = RecentCalls()
        self.image = photo_jpeg()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_bench/run", self._run)

    async def _m_sendPhoto(self, call: Call) -> Any:
        message = await super()._m_sendPhoto(call)
        call.files.clear()  # the picture was checked; nobody downloads it again
        for size in message["photo"]:
            self._files[size["file_id"]].data = None
        return message

    async def turn(self, user: int, text: str | None) -> tuple[float, float]:
        """One message; (seconds to the answer, time.monotonic() of the answer)."""
        sender = self.user(user, f"user{user}")
        chat = self.private_chat(sender)
        if text:
            message = self.send(chat, sender, text, push=False)
        else:
            message = self.send(chat, sender, photo=self.image, caption="make it red",
                                push=False)
        answer = self.expect_reply(message)
        started = time.monotonic()
        self.push_update({"message": message})
        arrived, _ = await asyncio.wait_for(answer, 600)
        return arrived - started, arrived

    async def _run(self, request: web.Request) -> web.Response:
        spec = await request.json()
        count, turns = int(spec["conversations"]), int(spec["turns"])
        spread, first_user = float(spec["spread_s"]), int(spec["first_user"])
        one_at_a_time = asyncio.Semaphore(1) if spec.get("one_at_a_time") else None
        firsts: list[float] = []
        follow_ups: list[float] = []
        arrivals: list[float] = []
        spans: list[tuple[float, float]] = []
        failures = 0

        async def conversation(n: int) -> None:
            nonlocal failures
            await asyncio.sleep(n * spread / count)
            began = time.monotonic()
            for k in range(turns):
                try:
                    if one_at_a_time is not None:
                        async with one_at_a_time:
                            took, at = await self.turn(first_user + n, FOLLOW_UP if k else None)
                    else:
                        took, at = await self.turn(first_user + n, FOLLOW_UP if k else None)
                except TimeoutError:
                    failures += 1
                    continue
                (follow_ups if k else firsts).append(took)
                arrivals.append(at)
            spans.append((began, time.monotonic()))

        started = time.monotonic()
        await asyncio.gather(*(conversation(n) for n in range(count)))
        wall = time.monotonic() - started
        # "all active": from the last conversation's start to the first one's end
        window = (max(s for s, _ in spans), min(e for _, e in spans))
        in_window = sum(1 for at in arrivals if window[0] <= at <= window[1])
        span = window[1] - window[0]
        return web.json_response({
            "firsts": firsts, "follow_ups": follow_ups, "failures": failures, "wall_s": wall,
            "steady_turns_per_s": in_window / span if span > 1 else None,
        })


async def serve_fake() -> None:
    async with UsersFake() as fake:
        print(fake.base_url, flush=True)
        await asyncio.Event().wait()


# ---------------------------------------------------------------------- the bot's process
class Harness:
    """The fake (child process), the runtime (store, engine, intake) and the adapter,
    long-polling as ``chatbrush run`` does, for one run."""

    def __init__(self, model: StandInGemini, *, limiter: bool,
                 concurrent_turns: int | None = None) -> None:
        self.model = model
        self.limiter = limiter
        self.concurrent_turns = concurrent_turns
        self._next_user = 10_000

    async def __aenter__(self) -> Harness:
        self._tmp = tempfile.TemporaryDirectory()
        self._fake = fake_process("bench.bench_telegram")
        base_url, self.fake_cpu = await self._fake.__aenter__()
        self.control = f"{base_url}/_bench/run"
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self.settings = load_settings(
            telegram_bot_token=TOKEN,
            telegram_base_url=base_url,
            chatbrush_db=str(Path(self._tmp.name) / "bench.db"),
            **({"chatbrush_concurrent_turns": self.concurrent_turns}
               if self.concurrent_turns else {}),
        )
        self._runtime_cm = open_runtime(self.settings, model=self.model)
        runtime = await self._runtime_cm.__aenter__()
        self.intake = runtime.intake
        options: dict[str, Any] = {}
        if not self.limiter:
            options["rate_limiter"] = FloodLimiter(paced=False, max_retries=3)
        self.adapter = TelegramAdapter(self.settings, self.intake, **options)
        self.intake.register(self.adapter)
        await self.adapter.start(webhook=False)
        await self.intake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.adapter.stop_receiving()
        await self.intake.stop(grace=self.settings.chatbrush_shutdown_grace)
        await self.adapter.close()
        await self._runtime_cm.__aexit__(None, None, None)
        await self.http.close()
        await self._fake.__aexit__(None, None, None)
        self._tmp.cleanup()

    async def run(self, conversations: int, turns: int, *, spread_s: float = 0.0,
                  one_at_a_time: bool = False) -> tuple[dict[str, Any], Usage]:
        """Users hold ``conversations`` of ``turns`` each (new users every run); what
        the fake timed (with its own CPU seconds), and what this process spent meanwhile."""
        spec = {"conversations": conversations, "turns": turns, "spread_s": spread_s,
                "first_user": self._next_user, "one_at_a_time": one_at_a_time}
        self._next_user += conversations
        fake_started = self.fake_cpu()
        async with measured() as usage, self.http.post(self.control, json=spec) as resp:
            resp.raise_for_status()
            result: dict[str, Any] = await resp.json()
        result["fake_cpu_s"] = self.fake_cpu() - fake_started
        return result, usage


def progress(text: str) -> None:
    print(f"bench_telegram: {text}", file=sys.stderr, flush=True)


async def overhead(turns: int, warmup: int) -> dict[str, Any]:
    reference_wall, reference_cpu = reference_ms()
    async with Harness(StandInGemini(), limiter=False) as h:
        progress(f"warm-up, {warmup} turns")
        await h.run(warmup, 1, one_at_a_time=True)
        progress(f"{turns} new chats, a photo each, one after another")
        new, new_usage = await h.run(turns, 1, one_at_a_time=True)
        follow = min(turns, 50)
        progress(f"one chat: a photo, then {follow} text follow-ups")
        chat, chat_usage = await h.run(1, follow + 1, one_at_a_time=True)
    # the conversation's first turn is a photo: count its CPU with the follow-ups, as
    # one more turn, rather than guess how it splits
    new_cpu = new_usage.cpu_ms_per(len(new["firsts"]))
    chat_cpu = chat_usage.cpu_ms_per(len(chat["follow_ups"]) + len(chat["firsts"]))
    return {
        "mode": "overhead",
        "turns": turns,
        "input": f"1280x960 JPEG, {len(photo_jpeg()) // 1000} kB",
        "reference_ms": {"wall": round(reference_wall, 2), "cpu": round(reference_cpu, 2)},
        "new_photo": {**summary(new["firsts"]), "cpu_ms_per_turn": round(new_cpu, 1),
                      "event_loop_cpu_ms_per_turn": round(
                          new_usage.loop_cpu_s * 1000 / len(new["firsts"]), 1),
                      "cpu_x_reference": round(new_cpu / reference_cpu, 2)},
        "text_followup": {**summary(chat["follow_ups"]), "cpu_ms_per_turn": round(chat_cpu, 1),
                          "event_loop_cpu_ms_per_turn": round(
                              chat_usage.loop_cpu_s * 1000 / (follow + 1), 1),
                          "cpu_x_reference": round(chat_cpu / reference_cpu, 2)},
        "failures": new["failures"] + chat["failures"],
        "load_average": load_average(),
    }


async def concurrency(threads: int, turns: int, latency: float, limiter: bool,
                      concurrent_turns: int | None = None) -> dict[str, Any]:
    reference_wall, reference_cpu = reference_ms()
    async with Harness(StandInGemini(latency), limiter=limiter,
                       concurrent_turns=concurrent_turns) as h:
        await h.run(2, 1)  # warm up
        progress(f"{threads} conversations x {turns} turns, model {latency} s, "
                 f"flood limiter {'on' if limiter else 'off'}, "
                 f"{h.settings.chatbrush_concurrent_turns} turns at once")
        result, usage = await h.run(threads, turns, spread_s=latency)
    times = result["firsts"] + result["follow_ups"]
    cpu = usage.cpu_ms_per(len(times))
    steady = result["steady_turns_per_s"]
    return {
        "mode": "concurrency",
        "threads": threads,
        "turns_per_thread": turns,
        "model_latency_s": latency,
        "flood_limiter": "Telegram limits" if limiter else "off",
        "concurrent_turns": h.settings.chatbrush_concurrent_turns,
        "offered_turns_per_s": round(threads / max(latency, 1.0), 1),
        "turns_per_s_all_active": round(steady, 1) if steady else None,
        "turns_per_s_whole_run": round(len(times) / result["wall_s"], 1),
        "time_to_answer": summary(times),
        "cpu_ms_per_turn": round(cpu, 1),
        "event_loop_cpu_ms_per_turn": round(usage.loop_cpu_s * 1000 / max(1, len(times)), 1),
        "reference_ms": {"wall": round(reference_wall, 2), "cpu": round(reference_cpu, 2)},
        "cpu_x_reference": round(cpu / reference_cpu, 2),
        "fake_telegram_cpu_ms_per_turn": round(result["fake_cpu_s"] * 1000 / max(1, len(times)),
                                               1),
        "rss_mb": {"before": round(usage.rss_before_mb), "peak": round(usage.rss_peak_mb),
                   "peak_anonymous": round(usage.anon_peak_mb),
                   "after": round(usage.rss_after_mb)},
        "failures": result["failures"],
        "load_average": load_average(),
    }


def render(results: list[dict[str, Any]]) -> list[str]:
    """The results as a markdown table (one per mode)."""
    if results[0]["mode"] == "overhead":
        lines = ["| turn | p50 ms | p95 ms | max ms | CPU ms per turn (event loop) "
                 "| × reference |", "|---|---:|---:|---:|---:|---:|"]
        for r in results:
            for key, what in (("new_photo", "a photo with an instruction, new chat"),
                              ("text_followup", "a text follow-up in one conversation")):
                f = r[key]
                lines.append(f"| {what} | {f['p50_ms']} | {f['p95_ms']} | {f['max_ms']} | "
                             f"{f['cpu_ms_per_turn']} ({f['event_loop_cpu_ms_per_turn']}) | "
                             f"**{f['cpu_x_reference']}** |")
        return lines
    lines = ["| conversations | flood limiter | turns at once | turns/s (all active / whole "
             "run) | time to answer p50 / p95 / max s | CPU ms per turn (event loop) "
             "| × reference | fake Telegram CPU ms | RSS MB before / peak (anonymous) / "
             "after | failures |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        t, m = r["time_to_answer"], r["rss_mb"]
        lines.append(
            f"| {r['threads']} × {r['turns_per_thread']} | {r['flood_limiter']} | "
            f"{r['concurrent_turns']} | **{r['turns_per_s_all_active']}** / "
            f"{r['turns_per_s_whole_run']} | {t['p50_ms'] / 1000:.1f} / "
            f"**{t['p95_ms'] / 1000:.1f}** / {t['max_ms'] / 1000:.1f} | "
            f"{r['cpu_ms_per_turn']} ({r['event_loop_cpu_ms_per_turn']}) | "
            f"{r['cpu_x_reference']} | {r['fake_telegram_cpu_ms_per_turn']} | "
            f"{m['before']} / **{m['peak']}** ({m['peak_anonymous']}) / {m['after']} | "
            f"{r['failures']} |")
    return lines


def machine() -> str:
    return (f"{os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}, "
            f"Python {sys.version.split()[0]}, python-telegram-bot {telegram.__version__}, "
            f"aiohttp {aiohttp.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print raw JSON only")
    parser.add_argument("--out", type=Path, default=None,
                        help="append the command, the machine and the table to this file")
    sub = parser.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("overhead", help="zero-latency model, one turn at a time")
    o.add_argument("--turns", type=int, default=200)
    o.add_argument("--warmup", type=int, default=5)
    c = sub.add_parser("concurrency", help="N conversations at once")
    c.add_argument("--threads", type=int, nargs="+", default=[500])
    c.add_argument("--turns", type=int, default=4, help="edits per conversation")
    c.add_argument("--latency", type=float, default=5.0, help="model seconds per call")
    c.add_argument("--no-limiter", action="store_true", help="ignore Telegram flood limits")
    c.add_argument("--concurrent-turns", type=int, default=None,
                   help="CHATBRUSH_CONCURRENT_TURNS (default: the setting's default)")
    sub.add_parser("serve-fake", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.mode == "serve-fake":
        asyncio.run(serve_fake())
        return 0
    results: list[dict[str, Any]] = []
    if args.mode == "overhead":
        results.append(asyncio.run(overhead(args.turns, args.warmup)))
    else:
        for n in args.threads:
            results.append(asyncio.run(concurrency(
                n, args.turns, args.latency, not args.no_limiter, args.concurrent_turns)))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(machine())
    for r in results:
        print(json.dumps(r))
    table = render(results)
    print("\n".join(table))
    if args.out is not None:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--out" in given:  # where it was written is not part of what was measured
            del given[given.index("--out"):given.index("--out") + 2]
        command = "python -m bench.bench_telegram " + " ".join(given)
        references = ", ".join(f"{r['reference_ms']['cpu']} ms" for r in results)
        with args.out.open("a", encoding="utf-8") as out:
            out.write("\n".join([
                f"```sh\n{command}\n```", "",
                f"Machine: {machine()}; load average at the end {results[-1]['load_average']}."
                f" Reference workload in the same process: {references} of CPU.", "",
                *table, "", ""]))
        print(f"appended to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
