"""How much time the Telegram path adds around the model: update in → ``sendPhoto``.

Everything real except the remote ends: the Telegram adapter (python-telegram-bot's bot,
request layer and flood limiter) long-polls the fake Bot API (``tests/fakes/telegram_api.py``)
over loopback HTTP and commits each update to the intake's inbox before confirming it;
the intake runs the turn (at most CHATBRUSH_CONCURRENT_TURNS, default 256, at once), the
engine downloads the photo with ``getFile`` + the file path and stores turns in a real
SQLite file, and the answer goes out with ``sendPhoto`` through the flood limiter. The
adapter runs with its production defaults. The fake Bot API runs in its own process and
measures each turn itself (from queueing the update to receiving the ``sendPhoto``), so
the bot process does only the bot's work.

Two measurements:

* ``overhead``: a zero-latency model; one private chat after another sends a photo with
  an instruction and waits for the answer, then one chat has a conversation of text
  follow-ups. Back to back, turns would exceed Telegram's 30 messages/s and measure the
  flood limiter's waiting, so it is off here (its 429 retries stay on).
* ``concurrency``: N private chats at once, each a conversation of ``--turns`` edits
  (each waits for its answer before the next), with a model that takes ``--latency``
  seconds (a non-blocking sleep, like a real HTTP call); the conversations start spread
  over one model call, so the bot sees a steady ``threads / latency`` turns a second.
  Overhead = turn time − latency. With Telegram's flood limits on (a real deployment) or
  off (``--no-limiter``: what the process itself can do).

    .venv/bin/python -m bench.bench_telegram overhead --turns 200
    .venv/bin/python -m bench.bench_telegram concurrency --threads 50 100 150 200 --latency 5
    .venv/bin/python -m bench.bench_telegram concurrency --threads 200 400 600 --no-limiter
    .venv/bin/python -m bench.bench_telegram concurrency --threads 400 --no-limiter \
        --concurrent-turns 4096       # more turns at once than the production default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import telegram
from aiohttp import web
from telegram.ext import AIORateLimiter

from adapters.telegram import TelegramAdapter
from bench.stand_ins import InstantModel, pct, photo
from bot.config import load_settings
from bot.runtime import open_runtime
from tests.fakes.telegram_api import TOKEN, FakeTelegram

REPO = Path(__file__).resolve().parents[1]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


# ---------------------------------------------------------------------- the fake's process
class TimedFake(FakeTelegram):
    """The fake Bot API plus ``POST /_bench/turn``: queue one user message, answer with
    the seconds until the bot's ``sendPhoto`` replying to it arrived."""

    def __init__(self, image: bytes) -> None:
        super().__init__()
        self.image = image

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_bench/turn", self._turn)

    async def _turn(self, request: web.Request) -> web.Response:
        spec = await request.json()
        user = self.user(int(spec["user"]), f"user{spec['user']}")
        chat = self.private_chat(user)
        if spec.get("text"):
            message = self.send(chat, user, spec["text"], push=False)
        else:
            message = self.send(chat, user, photo=self.image, caption="make it red", push=False)
        answer = self.expect_reply(message)
        started = time.monotonic()
        self.push_update({"message": message})
        try:
            arrived, _ = await asyncio.wait_for(answer, 300)
        except TimeoutError:
            return web.json_response({"error": "no answer"}, status=504)
        return web.json_response({"seconds": arrived - started})


async def serve_fake(side: int) -> None:
    async with TimedFake(photo(side)) as fake:
        print(fake.base_url, flush=True)
        await asyncio.Event().wait()


# ---------------------------------------------------------------------- the bot's process
class Harness:
    """The fake (child process), the runtime (store, engine, intake) and the adapter,
    long-polling as ``chatbrush run`` does, for one run."""

    def __init__(self, model: InstantModel, *, limiter: bool, side: int,
                 concurrent_turns: int | None = None) -> None:
        self.model = model
        self.limiter = limiter
        self.side = side
        self.concurrent_turns = concurrent_turns

    async def __aenter__(self) -> Harness:
        self._tmp = tempfile.TemporaryDirectory()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_telegram",
            "serve-fake",
            "--side",
            str(self.side),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        base_url = (await self._proc.stdout.readline()).decode().strip()
        self.control = f"{base_url}/_bench/turn"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
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
            options["rate_limiter"] = AIORateLimiter(
                overall_max_rate=0, group_max_rate=0, max_retries=3
            )
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
        self._proc.terminate()
        await self._proc.wait()
        self._tmp.cleanup()

    async def turn(self, user: int, text: str | None = None) -> float:
        """One user message (a photo with an instruction, or ``text``); seconds to answer."""
        async with self.http.post(self.control, json={"user": user, "text": text}) as resp:
            body = await resp.json()
        if "seconds" not in body:
            raise TimeoutError(body.get("error"))
        return float(body["seconds"])


async def overhead(turns: int, side: int, warmup: int) -> dict[str, Any]:
    times: list[float] = []
    followups: list[float] = []
    async with Harness(InstantModel(512), limiter=False, side=side) as h:
        for n in range(warmup + turns):
            took = await h.turn(10_000 + n)
            if n >= warmup:
                times.append(took)
        await h.turn(9_999)
        for _ in range(min(turns, 50)):
            followups.append(await h.turn(9_999, "and a bit brighter"))
    return {
        "mode": "overhead",
        "turns": turns,
        "input": f"{side}x{side} JPEG, {len(photo(side)) // 1000} kB",
        "new_photo": summary(times),
        "text_followup": summary(followups),
    }


async def concurrency(
    threads: int, turns: int, latency: float, side: int, limiter: bool,
    concurrent_turns: int | None = None,
) -> dict[str, Any]:
    times: list[float] = []
    failures = 0
    async with Harness(InstantModel(512, latency), limiter=limiter, side=side,
                       concurrent_turns=concurrent_turns) as h:
        await h.turn(1)  # warm up

        async def conversation(n: int) -> None:
            nonlocal failures
            # spread the starts over one model call: a steady rate, not one burst
            await asyncio.sleep(n * max(latency, 1.0) / threads)
            for k in range(turns):
                try:
                    times.append(await h.turn(20_000 + n, f"step {k}" if k else None))
                except TimeoutError:
                    failures += 1

        started = time.monotonic()
        await asyncio.gather(*(conversation(n) for n in range(threads)))
        wall = time.monotonic() - started
    overheads = [t - latency for t in times]
    return {
        "mode": "concurrency",
        "threads": threads,
        "turns_per_thread": turns,
        "model_latency_s": latency,
        "flood_limiter": "Telegram limits" if limiter else "off",
        "concurrent_turns": h.settings.chatbrush_concurrent_turns,
        "offered_turns_per_s": round(threads / max(latency, 1.0), 1),
        "turns_per_s": round(len(times) / wall, 1),  # whole run, ramp-up included
        "overhead": summary(overheads),
        "failures": failures,
    }


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, python-telegram-bot {telegram.__version__}, "
        f"load average {load:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print raw JSON only")
    sub = parser.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("overhead", help="zero-latency model, one turn at a time")
    o.add_argument("--turns", type=int, default=200)
    o.add_argument("--warmup", type=int, default=5)
    o.add_argument("--side", type=int, default=512, help="input photo side in pixels")
    c = sub.add_parser("concurrency", help="N conversations at once")
    c.add_argument("--threads", type=int, nargs="+", default=[50, 100, 150, 200])
    c.add_argument("--turns", type=int, default=3)
    c.add_argument("--latency", type=float, default=5.0, help="model seconds per call")
    c.add_argument("--side", type=int, default=512)
    c.add_argument("--no-limiter", action="store_true", help="ignore Telegram flood limits")
    c.add_argument("--concurrent-turns", type=int, default=None,
                   help="CHATBRUSH_CONCURRENT_TURNS (default: the setting's default, 256)")
    f = sub.add_parser("serve-fake", help=argparse.SUPPRESS)
    f.add_argument("--side", type=int, default=512)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.mode == "serve-fake":
        asyncio.run(serve_fake(args.side))
        return 0
    results: list[dict[str, Any]] = []
    if args.mode == "overhead":
        results.append(asyncio.run(overhead(args.turns, args.side, args.warmup)))
    else:
        for n in args.threads:
            results.append(
                asyncio.run(
                    concurrency(n, args.turns, args.latency, args.side, not args.no_limiter,
                                args.concurrent_turns)
                )
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(machine())
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
