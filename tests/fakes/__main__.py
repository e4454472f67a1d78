"""The fakes as local services, to rehearse a deployment without any real service.

    python -m tests.fakes telegram --port 8081 [--deliver-to http://127.0.0.1:8080]
    python -m tests.fakes slack --port 8083 [--deliver-to http://127.0.0.1:8080]
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

The fake Slack has the same routes: a message is an ``app_mention`` of the bot in channel
C111 (with a hosted picture when ``photo`` is true), delivered signed to
``--deliver-to``/slack/events once the bot listens there, or over Socket Mode once the bot
connected (either waits up to 30 s, then 504); replies are
keyed by the message's ``ts`` and are the pictures the bot shared in its thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.gemini import FakeGemini, make_png
from tests.fakes.slack_api import FakeSlack, event_callback, message_event, sign
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


class RehearsalSlack(FakeSlack):
    """The fake Slack plus the control routes of the module docstring."""

    def __init__(self, *, port: int, deliver_to: str | None) -> None:
        super().__init__(port=port)
        self.deliver_to = deliver_to
        self.add_user("U111", name="alice")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_fake/message", self._post_message)
        app.router.add_get("/_fake/replies/{ts}", self._replies)
        app.router.add_get("/_fake/sent", self._sent)

    async def _post_message(self, request: web.Request) -> web.Response:
        spec = await request.json() if request.can_read_body else {}
        files = [self.host_file(make_png(96, 64), "photo.png")] if spec.get("photo") else None
        text = spec.get("text") or spec.get("caption") or ""
        event = message_event(f"<@{self.bot_user_id}> {text}", kind="app_mention",
                              files=files)
        self.remember(event)
        envelope = event_callback(event, team_id=self.team_id, api_app_id=self.app_id,
                                  bot_user_id=self.bot_user_id)
        status: int | None = None
        if self.deliver_to:
            status = await self._post_event(envelope, self.deliver_to.rstrip("/"))
            if status is None:
                return web.json_response({"error": f"nothing listens at {self.deliver_to}"},
                                         status=504)
        else:
            try:
                await asyncio.wait_for(self.socket_send(envelope), 30)
            except TimeoutError:
                return web.json_response({"error": "no bot connected over Socket Mode"},
                                         status=504)
        return web.json_response({"message": event, "webhook_status": status})

    async def _post_event(self, envelope: dict[str, Any], server: str) -> int | None:
        """Post one signed event to the bot's /slack/events, waiting up to 30 s for a bot
        that is still starting to listen; its status, or None if nothing listened."""
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                body = json.dumps(envelope).encode()  # signed afresh on each try
                headers = {"Content-Type": "application/json",
                           **sign(body, self.signing_secret)}
                try:
                    async with http.post(f"{server}/slack/events", data=body,
                                         headers=headers) as response:
                        return response.status
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        return None

    async def _replies(self, request: web.Request) -> web.Response:
        ts = request.match_info["ts"]
        timeout = float(request.query.get("timeout", "30"))
        try:
            await self.wait_for(lambda: bool(self.shared_uploads("C111", ts)), timeout)
        except TimeoutError:
            return web.json_response({"error": "no picture in the thread"}, status=504)
        return web.json_response([
            {"file": f.id, "filename": f.filename, "bytes": f.length, "thread_ts": f.thread_ts,
             "initial_comment": f.initial_comment} for f in self.shared_uploads("C111", ts)
        ])

    async def _sent(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"channel": m.channel, "ts": m.ts, "text": m.text, "thread_ts": m.thread_ts}
            for m in self.messages
        ])


async def serve_telegram(port: int, deliver_to: str | None) -> None:
    async with RehearsalTelegram(port=port, deliver_to=deliver_to) as fake:
        print(f"fake Telegram Bot API on {fake.base_url}\n"
              f"  TELEGRAM_BASE_URL={fake.base_url}\n  TELEGRAM_BOT_TOKEN={TOKEN}", flush=True)
        await _until_stopped()


async def serve_slack(port: int, deliver_to: str | None) -> None:
    async with RehearsalSlack(port=port, deliver_to=deliver_to) as fake:
        print(f"fake Slack API on {fake.base_url}\n"
              f"  SLACK_API_URL={fake.api_url}\n  SLACK_BOT_TOKEN={fake.bot_token}\n"
              f"  SLACK_SIGNING_SECRET={fake.signing_secret}  (events over HTTP: web)\n"
              f"  SLACK_APP_TOKEN={fake.app_token}  (Socket Mode: run)", flush=True)
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
    parser.add_argument("service", choices=["telegram", "slack", "gemini"])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--deliver-to", default=None,
                        help="the bot's local server, for webhook delivery")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.service == "telegram":
            asyncio.run(serve_telegram(args.port, args.deliver_to))
        elif args.service == "slack":
            asyncio.run(serve_slack(args.port, args.deliver_to))
        else:
            asyncio.run(serve_gemini(args.port))


if __name__ == "__main__":
    main()
