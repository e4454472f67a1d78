"""What one bot process does for Slack users: the acknowledgement, CPU per event, overhead.

Everything real except the remote ends. Signed events are POSTed to ``/slack/events`` on
the bot's aiohttp server (slack-bolt's ``AsyncApp`` verifies and dispatches them); each
event is committed to the intake's inbox before slack-bolt acknowledges it, as in
``chatbrush web``; the engine downloads the picture from the fake Slack file host with the
bot token, stores turns in a real SQLite file (pictures in blob files beside it), and the
answer is uploaded with slack_sdk's three-step external upload over the adapter's shared
session (``SLACK_CONNECTIONS``). The model is the production Gemini client with the socket
replaced (``bench.stand_ins``): it encodes each request and reads a real-sized answer (a
distinct photographic 1024² PNG, 1.3 MB, with an 8 kB signature) at once. Each mention
carries a photo-like 1280×960 JPEG.

The fake Slack runs in **its own process** and sends the events too: it times each one
until its acknowledgement, and until the answer is shared in the thread. So this process
does only the bot's work, and its CPU time (every thread) divided by the events is the
bot's CPU per event, also given as a multiple of the reference workload
(:mod:`bench.realistic`) timed in the same process.

    .venv/bin/python -m bench.bench_slack                  # 200 mentions, one at a time
    .venv/bin/python -m bench.bench_slack --events 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import slack_bolt
from aiohttp import web

from adapters.slack.adapter import SlackAdapter
from adapters.slack.platform import create
from bench.fake_process import fake_process
from bench.process_stats import load_average, measured
from bench.realistic import photo_jpeg, reference_ms
from bench.stand_ins import StandInGemini, pct
from bot.app.runtime import open_runtime
from bot.core.config import load_settings
from tests.fakes.slack_api import FakeSlack, event_callback, message_event, sign


# ---------------------------------------------------------------------- the fake's process
class UsersSlack(FakeSlack):
    """The fake Slack plus ``POST /_bench/run``: people mention the bot with a photo,
    ``concurrency`` at a time; the answer is each event's seconds to the acknowledgement
    and to the shared upload."""

    def __init__(self) -> None:
        super().__init__()
        self.image = photo_jpeg()

    async def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        done = await super()._m_files_completeUploadExternal(args)
        for item in done.get("files", []):
            self.uploads[item["id"]].data = b"x"  # checked and shared; nobody reads it again
        return done

    async def run(self, request: web.Request) -> web.Response:
        spec = await request.json()
        url, count, at_once = spec["events_url"], int(spec["events"]), int(spec["concurrency"])
        acks: list[float] = []
        totals: list[float] = []
        gate = asyncio.Semaphore(at_once)
        async with aiohttp.ClientSession() as http:

            async def one() -> None:
                async with gate:
                    file = self.host_file(self.image, "photo.jpg", "image/jpeg")
                    event = message_event("<@UBOT> make it teal", kind="app_mention",
                                          files=[file])
                    body = json.dumps(event_callback(event)).encode()
                    headers = {"Content-Type": "application/json",
                               **sign(body, self.signing_secret)}
                    start = time.perf_counter()
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"the bot answered the event with {resp.status}")
                    acked = time.perf_counter()
                    await self.wait_for(lambda: bool(self.shared_uploads("C111", event["ts"])),
                                        seconds=120)
                    acks.append(acked - start)
                    totals.append(time.perf_counter() - start)

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            wall = time.perf_counter() - started
        return web.json_response({"acks": acks, "totals": totals, "wall_s": wall})


async def serve_fake() -> None:
    """The fake Slack, and beside it (the fake's router is fixed once it listens) the
    bench's own endpoint; prints both base URLs on one line."""
    async with UsersSlack() as fake:
        control = web.Application()
        control.router.add_post("/_bench/run", fake.run)
        runner = web.AppRunner(control, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(fake.base_url, f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()


# ---------------------------------------------------------------------- the bot's process
def ms(seconds: list[float], q: float) -> float:
    return round(pct([s * 1000 for s in seconds], q), 1)


async def run(events: int, concurrency: int, warmup: int) -> dict[str, Any]:
    reference_wall, reference_cpu = reference_ms()
    secrets = FakeSlack()  # the fake's defaults: tokens and signing secret
    with tempfile.TemporaryDirectory() as tmp:
        async with fake_process("bench.bench_slack") as (urls, fake_cpu):
            base_url, control_url = urls.split()
            settings = load_settings(
                slack_bot_token=secrets.bot_token,
                slack_signing_secret=secrets.signing_secret,
                slack_api_url=f"{base_url}/api/",
                chatbrush_db=str(Path(tmp) / "bench.db"),
            )
            async with (
                open_runtime(settings, model=StandInGemini()) as runtime,
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http,
            ):
                adapter = create(settings, runtime.intake)
                assert isinstance(adapter, SlackAdapter)
                runtime.intake.register(adapter)
                web_app = web.Application()
                adapter.mount(web_app)
                runner = web.AppRunner(web_app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
                await adapter.start(webhook=True)
                await runtime.intake.start()

                async def mentions(count: int, at_once: int) -> dict[str, Any]:
                    spec = {"events_url": events_url, "events": count, "concurrency": at_once}
                    async with http.post(f"{control_url}/_bench/run", json=spec) as resp:
                        resp.raise_for_status()
                        found: dict[str, Any] = await resp.json()
                        return found

                print(f"bench_slack: warm-up, {warmup} events", file=sys.stderr, flush=True)
                await mentions(warmup, 1)
                print(f"bench_slack: {events} mentions with a photo, {concurrency} at a time",
                      file=sys.stderr, flush=True)
                fake_started = fake_cpu()
                async with measured() as usage:
                    result = await mentions(events, concurrency)
                fake_used = fake_cpu() - fake_started
                await adapter.stop_receiving()
                await runtime.intake.stop(grace=settings.chatbrush_shutdown_grace)
                await adapter.close()
                await runner.cleanup()
    acks, totals = result["acks"], result["totals"]
    cpu = usage.cpu_ms_per(len(totals))
    return {
        "events": events,
        "concurrency": concurrency,
        "input": f"1280x960 JPEG, {len(photo_jpeg()) // 1000} kB",
        "ack_ms": {"p50": ms(acks, 50), "p95": ms(acks, 95), "max": ms(acks, 100)},
        "event_to_upload_ms": {"p50": ms(totals, 50), "p95": ms(totals, 95),
                               "max": ms(totals, 100)},
        "events_per_s": round(len(totals) / result["wall_s"], 1),
        "cpu_ms_per_event": round(cpu, 1),
        "reference_ms": {"wall": round(reference_wall, 2), "cpu": round(reference_cpu, 2)},
        "cpu_x_reference": round(cpu / reference_cpu, 2),
        "fake_slack_cpu_ms_per_event": round(fake_used * 1000 / max(1, len(totals)), 1),
        "rss_mb": {"before": round(usage.rss_before_mb), "peak": round(usage.rss_peak_mb)},
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["serve-fake"], help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.mode == "serve-fake":
        asyncio.run(serve_fake())
        return 0
    result = asyncio.run(run(args.events, args.concurrency, args.warmup))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Python {sys.version.split()[0]}, slack-bolt {slack_bolt.version.__version__}, "
          f"aiohttp {aiohttp.__version__}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
