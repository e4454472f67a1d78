"""How much time the Slack path adds around the model: event in → file shared in Slack.

Everything real except the remote ends: signed events are POSTed to ``/slack/events``
on an aiohttp server (slack-bolt verifies and dispatches), the engine stores turns in a
real SQLite file, the picture is downloaded from the fake Slack file host with the bot
token, and the answer is uploaded with slack_sdk's three-step external upload. The model
answers instantly, so the figures are pure overhead: signature check, the inbox commit,
download, image normalisation, storage, upload, reactions. Each event is committed to
the intake's inbox before slack-bolt acknowledges it, as in ``chatbrush web``.

    .venv/bin/python -m bench.bench_slack                 # 200 mentions, one at a time
    .venv/bin/python -m bench.bench_slack --events 500 --concurrency 8 --side 1024

Measured per event: the acknowledgement time (what Slack's 3-second rule sees) and the
time from sending the event until the fake Slack has the result shared in the thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters.slack import SlackAdapter, create
from bench.stand_ins import InstantModel, pct, photo
from bot.config import load_settings
from bot.runtime import open_runtime
from tests.fakes.slack_api import FakeSlack, event_callback, message_event, sign


async def run(events: int, concurrency: int, side: int, warmup: int) -> dict[str, object]:
    image = photo(side)
    acks: list[float] = []
    totals: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeSlack() as slack:
            settings = load_settings(
                slack_bot_token=slack.bot_token,
                slack_signing_secret=slack.signing_secret,
                slack_api_url=slack.api_url,
                chatbrush_db=str(Path(tmp) / "bench.db"),
            )
            async with (
                open_runtime(settings, model=InstantModel(side)) as runtime,
                aiohttp.ClientSession() as http,
            ):
                adapter = create(settings, runtime.intake)
                assert isinstance(adapter, SlackAdapter)
                runtime.intake.register(adapter)
                web_app = web.Application()
                adapter.mount(web_app)
                runner = web.AppRunner(web_app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
                await adapter.start(webhook=True)
                await runtime.intake.start()

                async def one(record: bool) -> None:
                    file = slack.host_file(image, "photo.jpg", "image/jpeg")
                    event = message_event("<@UBOT> make it teal", kind="app_mention", files=[file])
                    body = json.dumps(event_callback(event)).encode()
                    headers = {"Content-Type": "application/json"}
                    headers.update(sign(body, slack.signing_secret))
                    start = time.perf_counter()
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
                    acked = time.perf_counter()
                    await slack.wait_for(
                        lambda: bool(slack.shared_uploads("C111", event["ts"])), seconds=60
                    )
                    done = time.perf_counter()
                    if record:
                        acks.append((acked - start) * 1000)
                        totals.append((done - start) * 1000)

                for _ in range(warmup):
                    await one(record=False)
                gate = asyncio.Semaphore(concurrency)

                async def limited() -> None:
                    async with gate:
                        await one(record=True)

                began = time.perf_counter()
                await asyncio.gather(*(limited() for _ in range(events)))
                elapsed = time.perf_counter() - began
                await runtime.intake.drain()
                await adapter.stop_receiving()
                await runtime.intake.stop(grace=settings.chatbrush_shutdown_grace)
                await adapter.close()
                await runner.cleanup()
    return {
        "events": events,
        "concurrency": concurrency,
        "input": f"{side}x{side} JPEG, {len(image) / 1000:.0f} kB",
        "ack_ms": {"p50": pct(acks, 50), "p95": pct(acks, 95), "max": max(acks)},
        "event_to_upload_ms": {
            "p50": pct(totals, 50),
            "p95": pct(totals, 95),
            "mean": statistics.fmean(totals),
            "max": max(totals),
        },
        "throughput_per_s": events / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--side", type=int, default=512, help="input photo side in pixels")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args.events, args.concurrency, args.side, args.warmup))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    ack, total = result["ack_ms"], result["event_to_upload_ms"]
    assert isinstance(ack, dict) and isinstance(total, dict)
    print(
        f"Python {sys.version.split()[0]} on {platform.platform()}\n"
        f"{result['events']} mentions, concurrency {result['concurrency']}, "
        f"input {result['input']}\n"
        f"ack            p50 {ack['p50']:7.1f} ms   p95 {ack['p95']:7.1f} ms   "
        f"max {ack['max']:7.1f} ms\n"
        f"event→upload   p50 {total['p50']:7.1f} ms   p95 {total['p95']:7.1f} ms   "
        f"max {total['max']:7.1f} ms\n"
        f"throughput     {result['throughput_per_s']:.1f} events/s"
    )


if __name__ == "__main__":
    main()
