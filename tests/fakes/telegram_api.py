"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests and benchmarks.

The real python-telegram-bot client talks to it over HTTP through ``TELEGRAM_BASE_URL``,
so everything between our handler and the socket (form/multipart encoding, JSON
decoding, retries on 429, file downloads) is the real thing. The fake speaks the Bot
API's wire format (``{"ok": true, "result": ...}``), keeps each chat's history so that
``reply_to_message`` carries the real replied-to message, and is as strict as Telegram
where our adapter could get it wrong: caption and text lengths, photo dimensions,
``message_thread_id`` outside a forum, the 20 MB download cap, and update delivery that
only forgets an update once a later ``getUpdates`` offset confirms it (so a bot that
dies before confirming gets the update again, as with the real service).

Usage::

    async with FakeTelegram() as tg:
        app = ...base_url(f"{tg.base_url}/bot")...
        alice = tg.user(1001, "Alice")
        tg.send(tg.private_chat(alice), alice, photo=png_bytes, caption="make it red")
        [answer] = await tg.wait_sent(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
BOT_ID = 123456789
BOT_USERNAME = "ChatbrushTestBot"

#: Telegram's limits that the fake enforces (https://core.telegram.org/bots/api)
MAX_TEXT = 4096
#: Telegram's flood limits (see FakeTelegram.flood_limits)
GROUP_LIMIT, GROUP_WINDOW = 20, 60.0
PRIVATE_LIMIT, PRIVATE_WINDOW = 1, 1.0
BOT_LIMIT = 30
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
#: ``from`` of messages an anonymous group admin sends
GROUP_ANONYMOUS_BOT = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}

_JSON_FIELDS = {
    "reply_parameters",
    "reply_markup",
    "media",
    "commands",
    "scope",
    "allowed_updates",
    "entities",
    "caption_entities",
    "link_preview_options",
}
_COMMAND = re.compile(r"^/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?")
_MENTION = re.compile(r"@[A-Za-z0-9_]{3,32}")


@dataclass
class Call:
    """One Bot API request as the fake received it (JSON parameters decoded)."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    filenames: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    request: web.Request | None = field(default=None, repr=False, compare=False)


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    path: str
    size: int
    data: bytes | None


class BotApiError(Exception):
    def __init__(self, code: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities a Telegram client would attach: a leading command and @mentions.

    Offsets and lengths are in UTF-16 code units, as on the wire.
    """
    entities: list[dict[str, Any]] = []
    command = _COMMAND.match(text)
    if command:
        entities.append({"offset": 0, "length": _utf16_len(command.group()), "type": "bot_command"})
    for match in _MENTION.finditer(text):
        if command and match.start() < command.end():
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isalnum() or text[match.start() - 1] == "_"
        ):
            continue
        entities.append(
            {
                "offset": _utf16_len(text[: match.start()]),
                "length": _utf16_len(match.group()),
                "type": "mention",
            }
        )
    return entities


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of an encoded image (0, 0 when Pillow cannot read it)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return 0, 0


class FakeTelegram:
    """An in-process Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        bot_id: int = BOT_ID,
        bot_username: str = BOT_USERNAME,
        port: int = 0,
        flood_limits: bool = True,
    ) -> None:
        self.token = token
        #: Telegram's flood limits, enforced like the real service: a group or channel
        #: gets GROUP_LIMIT messages in any GROUP_WINDOW seconds, a person PRIVATE_LIMIT in
        #: PRIVATE_WINDOW, the bot BOT_LIMIT a second overall; beyond them 429 with
        #: ``retry_after`` (each media-group item counts)
        self.flood_limits = flood_limits
        self._sends: dict[int | None, deque[float]] = {}
        #: every call refused with 429 by the flood limits
        self.flooded: list[Call] = []
        self.bot: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Chatbrush",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        #: every request, in arrival order
        self.calls: list[Call] = []
        #: every message the bot sent, in order (each media-group item separately)
        self.sent: list[dict[str, Any]] = []
        #: (chat id, message id) -> time.monotonic() when the fake accepted it
        self.sent_at: dict[tuple[int, int], float] = {}
        #: (chat_id, user_id) -> "creator" | "administrator" | "member" | "left" ...
        self.chat_members: dict[tuple[int, int], str] = {}
        self.commands: list[dict[str, Any]] = []
        #: setMyCommands lists by language_code ("" for everyone else)
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}
        self._history: dict[int, dict[int, dict[str, Any]]] = {}
        self._next_message_id: dict[int, int] = {}
        self._files: dict[str, _File] = {}
        self._files_by_path: dict[str, _File] = {}
        self._file_seq = itertools.count(1)
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 700_000_001
        self._confirmed = 0
        self._failures: dict[str, list[BotApiError]] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = port  # 0: any free port (tests); a fixed one for `python -m tests.fakes`
        self._polls = 0
        self._redeliver: list[dict[str, Any]] = []
        self._delivered: list[dict[str, Any]] = []
        self._closing = False
        self._reply_waiters: dict[
            tuple[int, int], list[tuple[str, asyncio.Future[tuple[float, dict[str, Any]]]]]
        ] = {}
        #: what the bot subscribed to (Telegram keeps the last value it was given)
        self.allowed_updates: list[str] | None = None
        #: the webhook the bot registered (``url``, ``secret_token``), or None: polling
        self.webhook: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._webhook_confirmed: set[int] = set()

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1])
        return self

    def add_routes(self, app: web.Application) -> None:
        """Hook for subclasses (the benchmark adds a control API this way)."""

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        async with self._changed:
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What goes into ``TELEGRAM_BASE_URL``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def bot_id(self) -> int:
        return int(self.bot["id"])

    @property
    def bot_username(self) -> str:
        return str(self.bot["username"])

    # ------------------------------------------------------------------ chats and people
    @staticmethod
    def user(user_id: int, first_name: str, username: str | None = None, *,
             language_code: str = "en") -> dict[str, Any]:
        person: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }
        if username:
            person["username"] = username
        return person

    @staticmethod
    def private_chat(user: dict[str, Any]) -> dict[str, Any]:
        chat = {"id": user["id"], "first_name": user["first_name"], "type": "private"}
        if "username" in user:
            chat["username"] = user["username"]
        return chat

    @staticmethod
    def group(
        chat_id: int, title: str = "Design team", *, forum: bool = False, supergroup: bool = True
    ) -> dict[str, Any]:
        chat: dict[str, Any] = {
            "id": chat_id,
            "title": title,
            "type": "supergroup" if supergroup else "group",
        }
        if forum:
            chat["is_forum"] = True
        return chat

    def set_member(self, chat: dict[str, Any], user: dict[str, Any], status: str) -> None:
        self.chat_members[(int(chat["id"]), int(user["id"]))] = status

    def create_topic(self, chat: dict[str, Any], creator: dict[str, Any], name: str) -> int:
        """Open a forum topic; returns its ``message_thread_id`` (the service message id)."""
        message_id = self._new_message_id(chat["id"])
        service = {
            "message_id": message_id,
            "from": creator,
            "chat": chat,
            "date": int(time.time()),
            "message_thread_id": message_id,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
            "is_topic_message": True,
        }
        self._remember(service)
        return message_id

    # ------------------------------------------------------------------ files
    def add_file(
        self, data: bytes | None, *, size: int | None = None, kind: str = "photos", ext: str = "jpg"
    ) -> dict[str, Any]:
        """Store a downloadable file; ``data=None`` with ``size`` declares one never fetched."""
        n = next(self._file_seq)
        file_id = f"AgACAgQAAx{n:06d}FakeFileId"
        unique = f"AQAD{n:06d}"
        path = f"{kind}/file_{n}.{ext}"
        stored = _File(file_id, unique, path, size if size is not None else len(data or b""), data)
        self._files[file_id] = stored
        self._files_by_path[path] = stored
        return {"file_id": file_id, "file_unique_id": unique, "file_size": stored.size}

    def photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """A ``photo`` array as Telegram builds it: a small thumbnail, then the full size."""
        width, height = image_size(data)
        scale = min(1.0, 90 / max(width, height, 1))
        thumb = self.add_file(data[: max(1, len(data) // 8)])
        full = self.add_file(data)
        return [
            {
                **thumb,
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            },
            {**full, "width": width, "height": height},
        ]

    def file_data(self, file_id: str) -> bytes:
        """The bytes of a file the bot uploaded (a document), as Telegram keeps them."""
        data = self._files[file_id].data
        assert data is not None
        return data

    def download_count(self, file_id: str) -> int:
        path = self._files[file_id].path
        return sum(1 for c in self.calls if c.method == "download" and c.params["path"] == path)

    # ------------------------------------------------------------------ incoming traffic
    def send(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        text: str | None = None,
        *,
        photo: bytes | None = None,
        document: dict[str, Any] | None = None,
        caption: str | None = None,
        reply_to: dict[str, Any] | None = None,
        topic: int | None = None,
        media_group_id: str | None = None,
        sender_chat: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        push: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message; it is queued as an update unless ``push=False``.

        ``document`` is the ``document`` object (see :meth:`document`). Entities for a
        leading command and @mentions are added like a Telegram client would.
        """
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat["id"]),
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
        }
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
            message["reply_to_message"] = self._quote(chat["id"], reply_to or {"message_id": topic})
        elif reply_to is not None:
            message["reply_to_message"] = self._quote(chat["id"], reply_to)
            if chat["type"] == "supergroup":
                # a non-forum supergroup still reports the reply chain's root here
                root = reply_to.get("message_thread_id", reply_to["message_id"])
                message["message_thread_id"] = root
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        if text is not None:
            message["text"] = text
            if entities := auto_entities(text):
                message["entities"] = entities
        if photo is not None:
            message["photo"] = self.photo_sizes(photo)
        if document is not None:
            message["document"] = document
        if caption is not None:
            message["caption"] = caption
            if entities := auto_entities(caption):
                message["caption_entities"] = entities
        if extra:
            message.update(extra)
        self._remember(message)
        if push:
            self.push_update({"message": message})
        return message

    def document(
        self,
        data: bytes | None,
        mime_type: str,
        file_name: str,
        *,
        size: int | None = None,
    ) -> dict[str, Any]:
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.add_file(data, size=size, kind="documents", ext=ext)
        return {"file_name": file_name, "mime_type": mime_type, **stored}

    def edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        edited = {**message, "text": text, "edit_date": int(time.time())}
        self.push_update({"edited_message": edited})
        return edited

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (real shape); assigns ``update_id`` when missing."""
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
        self._next_update_id = max(self._next_update_id, int(update["update_id"])) + 1
        self._updates.append(update)
        self._delivered.append(update)
        self._notify()
        return update

    def delivered_update(self, message: dict[str, Any]) -> dict[str, Any]:
        """The update that carried ``message`` (to deliver it again)."""
        for update in self._delivered:
            if update.get("message") is message:
                return update
        raise KeyError(message["message_id"])

    def redeliver(self, update: dict[str, Any]) -> None:
        """Hand an already delivered update out once more, same ``update_id``.

        This is what Telegram does when it never got the acknowledging offset (a lost
        response, a crash between receiving and confirming).
        """
        self._redeliver.append(copy.deepcopy(update))
        self._notify()

    @property
    def pending_updates(self) -> int:
        return sum(1 for u in self._updates if u["update_id"] >= self._confirmed)

    def confirmed(self, update: dict[str, Any]) -> bool:
        """Whether the bot confirmed ``update`` (a later getUpdates offset, or a 2xx to its
        webhook delivery): Telegram forgets it and will never deliver it again."""
        return int(update["update_id"]) < self._confirmed or (
            int(update["update_id"]) in self._webhook_confirmed
        )

    async def post_to_webhook(self, update: dict[str, Any], server: str, *,
                              secret: str | None = None) -> int:
        """Deliver ``update`` as Telegram does to a webhook: a JSON POST to the registered
        URL's path on ``server`` (the bot's local address: Telegram would use the public
        one) with the registered secret token header (or ``secret`` to forge one).
        A 2xx answer confirms the update; anything else leaves it to be retried."""
        import aiohttp

        if self.webhook is None:
            raise AssertionError("the bot registered no webhook")
        path = urlsplit(self.webhook["url"]).path or "/"
        headers = {"Content-Type": "application/json"}
        token = secret if secret is not None else self.webhook.get("secret_token")
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        async with aiohttp.ClientSession() as http, http.post(
            server.rstrip("/") + path, data=json.dumps(update), headers=headers
        ) as response:
            if 200 <= response.status < 300:
                self._webhook_confirmed.add(int(update["update_id"]))
            return response.status

    def queue_update(self, message: dict[str, Any]) -> dict[str, Any]:
        """An update for ``message`` with its id, remembered but not offered to getUpdates
        (for webhook delivery with :meth:`post_to_webhook`)."""
        update = {"update_id": self._next_update_id, "message": message}
        self._next_update_id += 1
        self._delivered.append(update)
        return update

    # ------------------------------------------------------------------ fault injection
    def fail_next(
        self, method: str, *, code: int = 429, description: str = "", retry_after: int = 1
    ) -> None:
        """Make the next call of ``method`` fail; 429 carries ``retry_after`` like Telegram."""
        if code == 429:
            error = BotApiError(
                429,
                description or f"Too Many Requests: retry after {retry_after}",
                retry_after=retry_after,
            )
        else:
            error = BotApiError(code, description or "Internal Server Error")
        self._failures.setdefault(method, []).append(error)

    # ------------------------------------------------------------------ waiting
    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout_s: float = 30.0, what: str = "condition"
    ) -> Any:
        """Wait until ``predicate()`` is truthy (a safety net, not a speed assertion)."""

        async def waiter() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(waiter(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; calls: {self.summary()}") from None

    async def wait_sent(
        self, count: int, *, chat_id: int | None = None, timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` messages the bot sent (to ``chat_id`` if given)."""

        def ready() -> list[dict[str, Any]] | None:
            found = self.sent_to(chat_id)
            return found[:count] if len(found) >= count else None

        result: list[dict[str, Any]] = await self.wait_for(
            ready, timeout_s=timeout_s, what=f"{count} sent message(s)"
        )
        return result

    async def wait_calls(
        self, method: str, count: int = 1, *, timeout_s: float = 30.0
    ) -> list[Call]:
        def ready() -> list[Call] | None:
            found = self.calls_of(method)
            return found if len(found) >= count else None

        result: list[Call] = await self.wait_for(
            ready, timeout_s=timeout_s, what=f"{count} {method} call(s)"
        )
        return result

    async def wait_polled_past(self, item: dict[str, Any], *, timeout_s: float = 30.0) -> None:
        """Wait until the bot confirmed an update (or the update of a message) and asked
        for more: from then on the bot has it, and a clean stop will finish handling it."""
        update = item if "update_id" in item else self.delivered_update(item)
        target = int(update["update_id"])
        await self.wait_for(
            lambda: self._confirmed > target, timeout_s=timeout_s, what=f"ack of update {target}"
        )

    def sent_to(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent if chat_id is None or m["chat"]["id"] == chat_id]

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def summary(self) -> str:
        return ", ".join(c.method for c in self.calls if c.method != "getUpdates")

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ history
    def _new_message_id(self, chat_id: int) -> int:
        n = self._next_message_id.get(chat_id, 100)
        self._next_message_id[chat_id] = n + 1
        return n

    def _remember(self, message: dict[str, Any]) -> None:
        self._history.setdefault(message["chat"]["id"], {})[message["message_id"]] = message

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        return self._history[chat_id][message_id]

    def _quote(self, chat_id: int, reply_to: dict[str, Any]) -> dict[str, Any]:
        """``reply_to_message`` as Telegram sends it: the stored message, one level deep."""
        stored = self._history.get(chat_id, {}).get(reply_to["message_id"], reply_to)
        quoted = copy.deepcopy(stored)
        quoted.pop("reply_to_message", None)
        return quoted

    # ------------------------------------------------------------------ HTTP handlers
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._read_call(method, request)
        self.calls.append(call)
        self._notify()
        if request.match_info["token"] != self.token:
            return self._error(BotApiError(401, "Unauthorized"))
        queued = self._failures.get(method)
        if queued:
            return self._error(queued.pop(0))
        flood = self._flood_check(method, call.params)
        if flood is not None:
            self.flooded.append(call)
            return self._error(flood)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(BotApiError(404, "Not Found: method not found"))
        try:
            result = await handler(call)
        except BotApiError as exc:
            return self._error(exc)
        finally:
            self._notify()
        if self._reply_waiters and method.startswith("send"):
            for message in result if isinstance(result, list) else [result]:
                if isinstance(message, dict):
                    self._resolve_reply(message, call.at)
        return web.json_response({"ok": True, "result": result})

    def _flood_check(self, method: str, params: dict[str, Any]) -> BotApiError | None:
        """A 429 when this send would pass a limit; otherwise it is counted."""
        if not self.flood_limits or not method.startswith("send") or method == "sendChatAction":
            return None
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            return None
        cost = len(params.get("media") or ()) or 1
        limit, window = ((GROUP_LIMIT, GROUP_WINDOW) if chat_id < 0
                         else (PRIVATE_LIMIT, PRIVATE_WINDOW))
        now = time.monotonic()
        for key, most, span in ((None, BOT_LIMIT, 1.0), (chat_id, limit, window)):
            sent = self._sends.setdefault(key, deque())
            while sent and sent[0] <= now - span:
                sent.popleft()
            if sent and len(sent) + cost > most:
                wait = max(1, math.ceil(sent[0] + span - now))
                return BotApiError(429, f"Too Many Requests: retry after {wait}",
                                   retry_after=wait)
        for key in (None, chat_id):
            self._sends[key].extend([now] * cost)
        return None

    def expect_reply(
        self, message: dict[str, Any], kind: str = "photo"
    ) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        """A future for the bot's first reply to ``message`` carrying ``kind`` (``photo``,
        ``document``, ``text``): ``(time.monotonic() when the request arrived, message)``.

        Cheap enough for thousands of waiters, unlike polling :meth:`wait_for`.
        """
        future: asyncio.Future[tuple[float, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        key = (message["chat"]["id"], message["message_id"])
        self._reply_waiters.setdefault(key, []).append((kind, future))
        return future

    def _resolve_reply(self, message: dict[str, Any], at: float) -> None:
        replied = message.get("reply_to_message")
        if not isinstance(replied, dict):
            return
        key = (message["chat"]["id"], replied["message_id"])
        waiters = self._reply_waiters.get(key)
        if not waiters:
            return
        for kind, future in list(waiters):
            if kind in message and not future.done():
                future.set_result((at, message))
                waiters.remove((kind, future))
        if not waiters:
            del self._reply_waiters[key]

    async def _read_call(self, method: str, request: web.Request) -> Call:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        filenames: dict[str, str] = {}
        if request.method == "POST" and request.content_type == "application/json":
            params = await request.json()
        elif request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                    filenames[key] = value.filename
                else:
                    params[key] = value
        params.update(request.query)
        for key, value in list(params.items()):
            if key in _JSON_FIELDS and isinstance(value, str):
                params[key] = json.loads(value)
        return Call(method, params, files, filenames, request=request)

    @staticmethod
    def _error(exc: BotApiError) -> web.Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": exc.code,
            "description": exc.description,
        }
        if exc.parameters:
            body["parameters"] = exc.parameters
        return web.json_response(body, status=exc.code)

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.calls.append(Call("download", {"path": path}))
        self._notify()
        stored = self._files_by_path.get(path)
        if request.match_info["token"] != self.token or stored is None or stored.data is None:
            return self._error(BotApiError(404, "Not Found"))
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # ------------------------------------------------------------------ methods
    async def _m_getMe(self, call: Call) -> Any:
        return self.bot

    async def _m_deleteWebhook(self, call: Call) -> Any:
        params = call.params
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._confirmed = self._next_update_id
        self.webhook = None
        return True

    async def _m_setWebhook(self, call: Call) -> Any:
        params = call.params
        url = str(params.get("url") or "")
        if not url:
            self.webhook = None  # an empty URL removes the webhook, as deleteWebhook does
            return True
        if not url.startswith("https://"):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided "
                                   "for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"] or None
        self.webhook = {"url": url, "secret_token": secret}
        return True

    async def _m_getWebhookInfo(self, call: Call) -> Any:
        return {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates,
        }

    async def _m_setMyCommands(self, call: Call) -> Any:
        params = call.params
        commands = params.get("commands") or []
        for cmd in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", cmd["command"]) or not (
                1 <= len(cmd["description"]) <= 256
            ):
                raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        language = str(params.get("language_code") or "")
        self.commands_by_language[language] = commands
        if not language:
            self.commands = commands
        return True

    async def _m_getUpdates(self, call: Call) -> Any:
        if self.webhook is not None:
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                   "active; use deleteWebhook to delete the webhook first")
        params = call.params
        offset = int(params.get("offset", 0) or 0)
        if offset:
            self._confirmed = max(self._confirmed, offset)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = int(params.get("limit", 100) or 100)
        timeout = float(params.get("timeout", 0) or 0)
        self._polls += 1
        self._notify()

        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"] or None

        def wanted(update: dict[str, Any]) -> bool:
            kinds = self.allowed_updates or ["message", "edited_message", "channel_post"]
            return any(kind in update for kind in kinds)

        def ready() -> list[dict[str, Any]]:
            fresh = [u for u in self._updates if u["update_id"] >= self._confirmed and wanted(u)]
            return (self._redeliver + fresh)[:limit]

        if not ready() and timeout > 0:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._closing or ready()), timeout
                    )
        transport = call.request.transport if call.request is not None else None
        if transport is None or transport.is_closing():
            return []  # the client gave up on this long poll: deliver nothing to nobody
        batch = ready()
        self._redeliver = self._redeliver[len(batch) :]
        return batch

    async def _m_sendChatAction(self, call: Call) -> Any:
        params = call.params
        self._chat(params)
        self._thread(params)
        return True

    async def _m_getChatMember(self, call: Call) -> Any:
        params = call.params
        chat_id = int(params["chat_id"])
        user_id = int(params["user_id"])
        status = self.chat_members.get((chat_id, user_id), "member")
        member: dict[str, Any] = {
            "status": status,
            "user": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
        }
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                {
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
            )
        elif status == "left":
            pass
        return member

    async def _m_getFile(self, call: Call) -> Any:
        params = call.params
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise BotApiError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise BotApiError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }

    async def _m_sendMessage(self, call: Call) -> Any:
        params = call.params
        text = str(params.get("text", ""))
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise BotApiError(400, "Bad Request: message is too long")
        message = self._outgoing(params)
        message["text"] = text
        return self._record(message)

    async def _m_sendPhoto(self, call: Call) -> Any:
        params, files = call.params, call.files
        data = self._upload(params, files, "photo")
        self._check_photo(data)
        message = self._outgoing(params)
        message["photo"] = self.photo_sizes(data)
        self._caption(message, params)
        return self._record(message)

    async def _m_sendDocument(self, call: Call) -> Any:
        params, files = call.params, call.files
        data = self._upload(params, files, "document")
        message = self._outgoing(params)
        name = params.get("document_filename") or "file"
        message["document"] = {
            "file_name": name,
            "mime_type": "application/octet-stream",
            **self.add_file(data, kind="documents"),
        }
        for key, filename in call.filenames.items():
            if key != "thumbnail" and filename:
                message["document"]["file_name"] = filename
        self._caption(message, params)
        return self._record(message)

    async def _m_sendMediaGroup(self, call: Call) -> Any:
        params, files = call.params, call.files
        media = params.get("media") or []
        if not 2 <= len(media) <= 10:
            raise BotApiError(400, "Bad Request: wrong number of media items")
        kinds = {m["type"] for m in media}
        if "document" in kinds and kinds != {"document"}:
            raise BotApiError(400, "Bad Request: documents can't be mixed with other media types")
        group_id = str(next(self._file_seq) + 13_000_000_000_000_000)
        messages = []
        checked = []
        for item in media:
            data = self._resolve(item["media"], files)
            if item["type"] == "photo":
                self._check_photo(data)
            caption = item.get("caption")
            if caption is not None and len(caption) > MAX_CAPTION:
                raise BotApiError(400, "Bad Request: message caption is too long")
            checked.append((item, data))
        for item, data in checked:
            message = self._outgoing(params)
            message["media_group_id"] = group_id
            if item["type"] == "photo":
                message["photo"] = self.photo_sizes(data)
            else:
                message["document"] = {
                    "file_name": "image",
                    "mime_type": "application/octet-stream",
                    **self.add_file(data, kind="documents"),
                }
            if item.get("caption"):
                message["caption"] = item["caption"]
            messages.append(self._record(message))
        return messages

    # ------------------------------------------------------------------ helpers
    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        for message in self._history.get(chat_id, {}).values():
            return dict(message["chat"])
        raise BotApiError(400, "Bad Request: chat not found")

    def _thread(self, params: dict[str, Any]) -> int | None:
        chat = self._chat(params)
        thread = params.get("message_thread_id")
        if thread is None:
            return None
        if not chat.get("is_forum"):
            raise BotApiError(400, "Bad Request: message thread not found")
        return int(thread)

    def _outgoing(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        thread = self._thread(params)
        message: dict[str, Any] = {
            "message_id": 0,
            "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")},
            "chat": chat,
            "date": int(time.time()),
        }
        reply = params.get("reply_parameters")
        if reply is None and params.get("reply_to_message_id") is not None:
            reply = {"message_id": int(params["reply_to_message_id"])}
        if reply is not None:
            target = self._history.get(chat["id"], {}).get(int(reply["message_id"]))
            if target is None and not reply.get("allow_sending_without_reply"):
                raise BotApiError(400, "Bad Request: message to be replied not found")
            if target is not None:
                message["reply_to_message"] = self._quote(chat["id"], target)
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        return message

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        message["message_id"] = self._new_message_id(message["chat"]["id"])
        self._remember(message)
        self.sent.append(message)
        self.sent_at[(message["chat"]["id"], message["message_id"])] = time.monotonic()
        return message

    def _caption(self, message: dict[str, Any], params: dict[str, Any]) -> None:
        caption = params.get("caption")
        if caption is None:
            return
        if len(caption) > MAX_CAPTION:
            raise BotApiError(400, "Bad Request: message caption is too long")
        message["caption"] = caption

    def _upload(self, params: dict[str, Any], files: dict[str, bytes], name: str) -> bytes:
        if name in files:
            return files[name]
        value = params.get(name)
        if isinstance(value, str):
            return self._resolve(value, files)
        raise BotApiError(400, f"Bad Request: there is no {name} in the request")

    def _resolve(self, media: str, files: dict[str, bytes]) -> bytes:
        if media.startswith("attach://"):
            data = files.get(media.removeprefix("attach://"))
            if data is None:
                raise BotApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            return data
        stored = self._files.get(media)
        if stored is None or stored.data is None:
            raise BotApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return stored.data

    @staticmethod
    def _check_photo(data: bytes) -> None:
        if len(data) > MAX_PHOTO_BYTES:
            raise BotApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        width, height = image_size(data)
        if not width or not height:
            raise BotApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        if width + height > 10_000 or max(width, height) / min(width, height) > 20:
            raise BotApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")


def photos_in(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sent messages that carry a photo."""
    return [m for m in messages if "photo" in m]
