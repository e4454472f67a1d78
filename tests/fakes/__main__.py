"""The fakes as local services, to rehearse a deployment without any real service.

    python -m tests.fakes telegram --port 8081 [--deliver-to http://127.0.0.1:8080]
    python -m tests.fakes gemini --port 8082

Each prints the settings that point a bot at it, then serves on 127.0.0.1 until Ctrl-C or
SIGTERM. The fake Telegram adds a small control API, for a person with curl or a script
such as .ci/container, playing the user's side:

    POST /_fake/message   {"caption": "blur it", "photo": true}  (or {"text": "/help"})
        a user (Alice, a private chat) sends it: with ``--deliver-to``, posted to the
        bot's webhook there once the bot registered one (504 if it does not within 30 s);
        without, offered to getUpdates; answers {"message": ..., "webhook_status": 200 | null}
    GET  /_fake/replies/{message_id}?timeout=30
        waits until the bot answered that message with a picture; 200 with the bot's
        answers, or 504 when none came in time
    GET  /_fake/sent      every message the bot sent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from aiohttp import web

from tests.fakes.gemini import FakeGemini, make_png
from tests.fakes.telegram_api import TOKEN, FakeTelegram


class RehearsalTelegram(FakeTelegram):
    """The fake Bot API plus the control routes of the module docstring."""

    def __init__(self, *, port: int, deliver_to: str | None) -> None:
        super().__init__(port=port)
        self.deliver_to = deliver_to
        self.alice = self.user(1001, "Alice")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_fake/message", self._post_message)
        app.router.add_get("/_fake/replies/{message_id}", self._replies)
        app.router.add_get("/_fake/sent", self._sent)

    async def _post_message(self, request: web.Request) -> web.Response:
        spec = await request.json() if request.can_read_body else {}
        chat = self.private_chat(self.alice)
        photo = make_png(96, 64) if spec.get("photo") else None
        message = self.send(chat, self.alice, spec.get("text"), photo=photo,
                            caption=spec.get("caption"), push=False)
        status: int | None = None
        if self.deliver_to:  # a bot just started registers its webhook after serving
            try:
                await self.wait_for(lambda: self.webhook, timeout_s=30, what="setWebhook")
            except AssertionError as exc:
                return web.json_response({"error": str(exc)[:2000]}, status=504)
            status = await self.post_to_webhook(self.queue_update(message), self.deliver_to)
        else:
            self.push_update({"message": message})
        return web.json_response({"message": message, "webhook_status": status})

    async def _replies(self, request: web.Request) -> web.Response:
        message_id = int(request.match_info["message_id"])
        timeout = float(request.query.get("timeout", "30"))

        def answers() -> list[dict[str, Any]] | None:
            mine = [m for m in self.sent
                    if m.get("reply_to_message", {}).get("message_id") == message_id]
            return mine if any("photo" in m or "document" in m for m in mine) else None

        try:
            found = await self.wait_for(answers, timeout_s=timeout, what="a picture")
        except AssertionError as exc:
            return web.json_response({"error": str(exc)[:2000]}, status=504)
        return web.json_response(found)

    async def _sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)


async def serve_telegram(port: int, deliver_to: str | None) -> None:
    async with RehearsalTelegram(port=port, deliver_to=deliver_to) as fake:
        print(f"fake Telegram Bot API on {fake.base_url}\n"
              f"  TELEGRAM_BASE_URL={fake.base_url}\n  TELEGRAM_BOT_TOKEN={TOKEN}", flush=True)
        await _until_stopped()


async def serve_gemini(port: int) -> None:
    async with FakeGemini(port=port, accept_any_key=True) as fake:
        print(f"fake Gemini API on {fake.base_url}\n"
              f"  GEMINI_BASE_URL={fake.base_url}\n  GEMINI_API_KEY=any-key", flush=True)
        await _until_stopped()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", choices=["telegram", "gemini"])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--deliver-to", default=None,
                        help="telegram: the bot's local server, for webhook delivery")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.service == "telegram":
            asyncio.run(serve_telegram(args.port, args.deliver_to))
        else:
            asyncio.run(serve_gemini(args.port))


if __name__ == "__main__":
    main()
