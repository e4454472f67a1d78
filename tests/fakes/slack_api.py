"""A fake Slack on 127.0.0.1: the Web API, file hosting, uploads, Socket Mode.

It speaks the wire format slack_sdk expects (``{"ok": ...}`` JSON, form or JSON request
bodies, ``Authorization: Bearer`` tokens, 429 with ``Retry-After``), hosts user files
that — like the real ``files.slack.com`` — answer a login *page* with status 200 when
the bot token is missing, and records everything it receives so tests can assert what
users would see in Slack. The event builders and :func:`sign` produce the real
``event_callback`` payload shapes and v0 signatures for delivering events over HTTP.

    async with FakeSlack() as slack:
        settings = Settings(slack_api_url=slack.api_url, slack_bot_token=slack.bot_token, ...)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str | None
    #: the client's address and port: one per connection it opened
    peer: tuple[str, int] | None = None


@dataclass
class PostedMessage:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    user: str
    files: list[str] = field(default_factory=list)


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    upload_authorization: str | None = None


@dataclass
class HostedFile:
    id: str
    name: str
    mimetype: str
    data: bytes
    redirect_to: str | None = None
    downloads: list[str | None] = field(default_factory=list)  # Authorization headers seen


@dataclass
class Reaction:
    action: str  # "add" | "remove"
    name: str
    channel: str
    timestamp: str


class FakeSlack:
    """Slack's Web API, file host and Socket Mode endpoint, all on one loopback port."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token-1234",
        app_token: str = "xapp-1-fake-app-token",
        signing_secret: str = "fake-signing-secret-8f1e",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T111",
        app_id: str = "A111",
        port: int = 0,
    ) -> None:
        self.port = port  # 0: any free port (tests); a fixed one for `python -m tests.fakes`
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.app_id = app_id
        self.calls: list[ApiCall] = []
        self.messages: list[PostedMessage] = []
        self.uploads: dict[str, UploadedFile] = {}
        self.reactions: list[Reaction] = []
        self.responses: list[dict[str, Any]] = []  # posts to slash-command response_urls
        self.users: dict[str, dict[str, Any]] = {}
        #: each user's locale, sent by users.info only with include_locale (as Slack does)
        self.locales: dict[str, str] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}  # people's messages, by channel
        self.files: dict[str, HostedFile] = {}
        self.rejected_requests: list[str] = []  # API calls refused for a bad token
        self._failures: dict[str, list[tuple[int, int]]] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket_ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_post("/commands/{hook}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def add_routes(self, app: web.Application) -> None:
        """Hook for subclasses (`python -m tests.fakes slack` adds a control API this way)."""

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ test setup
    def add_user(
        self, user_id: str, *, name: str = "", is_admin: bool = False, is_owner: bool = False,
        locale: str = "en-US",
    ) -> None:
        self.locales[user_id] = locale
        self.users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name or user_id.lower(),
            "deleted": False,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "profile": {"real_name": name or user_id, "display_name": name or user_id},
        }

    def host_file(
        self,
        data: bytes,
        name: str = "photo.png",
        mimetype: str = "image/png",
        *,
        user: str = "U111",
        host: str | None = None,
        size: int | None = None,
        redirect_to: str | None = None,
    ) -> dict[str, Any]:
        """Store a file and return its ``files[]`` entry as Slack puts it in events.

        ``host`` overrides the origin of the download URL (a foreign server in tests),
        ``size`` the declared size; ``redirect_to`` makes the download answer a 302.
        """
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = HostedFile(file_id, name, mimetype, data, redirect_to)
        origin = host or self.base_url
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        now = int(time.time())
        return {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "editable": False,
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{origin}/files-pri/{self.team_id}-{file_id}/{name}",
            "url_private_download": f"{origin}/files-pri/{self.team_id}-{file_id}/download/{name}",
            "permalink": f"https://fake.slack.com/files/{user}/{file_id}/{name}",
            "has_rich_preview": False,
        }

    def remember(self, event: Mapping[str, Any]) -> None:
        """Keep a person's message (as delivered in an event) in the channel history."""
        message = {k: v for k, v in event.items() if k not in ("channel", "channel_type")}
        message["type"] = "message"
        self.history.setdefault(str(event["channel"]), []).append(message)

    def fail_next(self, method: str, status: int = 429, retry_after: int = 0) -> None:
        """Make the next call of ``method`` answer ``status`` (429 → ``Retry-After``)."""
        self._failures.setdefault(method, []).append((status, retry_after))

    def hold(self, method: str) -> None:
        """Keep calls of ``method`` waiting (recorded, unanswered) until :meth:`release`;
        ``"files.download"`` holds file downloads."""
        self._held[method] = asyncio.Event()

    def release(self, method: str) -> None:
        gate = self._held.pop(method, None)
        if gate is not None:
            gate.set()

    # ------------------------------------------------------------------ assertions
    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def thread_messages(self, channel: str, thread_ts: str | None) -> list[PostedMessage]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts == thread_ts]

    def reactions_on(self, channel: str, ts: str) -> set[str]:
        """The reactions currently shown on a message (adds minus removes)."""
        shown: set[str] = set()
        for r in self.reactions:
            if r.channel == channel and r.timestamp == ts:
                if r.action == "add":
                    shown.add(r.name)
                else:
                    shown.discard(r.name)
        return shown

    def shared_uploads(self, channel: str, thread_ts: str | None = None) -> list[UploadedFile]:
        return [
            f
            for f in self.uploads.values()
            if f.channel == channel and (thread_ts is None or f.thread_ts == thread_ts)
        ]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        """Wait until ``predicate()`` holds after some request (a bound, not a timing test)."""
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(predicate)

    # ------------------------------------------------------------------ Web API
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _request_args(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.calls.append(ApiCall(method, args, token, tuple(peer[:2]) if peer else None))
        gate = self._held.get(method)
        if gate is not None:
            await self._notify()
            await gate.wait()
        try:
            failures = self._failures.get(method)
            if failures:
                status, retry_after = failures.pop(0)
                headers = {"Retry-After": str(retry_after)} if status == 429 else {}
                error = "ratelimited" if status == 429 else "internal_error"
                return web.json_response(
                    {"ok": False, "error": error}, status=status, headers=headers
                )
            expected = self.app_token if method == "apps.connections.open" else self.bot_token
            if token is None:
                self.rejected_requests.append(method)
                return web.json_response({"ok": False, "error": "not_authed"})
            if token != expected:
                self.rejected_requests.append(method)
                return web.json_response({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                return web.json_response({"ok": False, "error": "unknown_method"})
            result: dict[str, Any] = await handler(args)
            return web.json_response(result)
        finally:
            await self._notify()

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n:06d}"

    async def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake Team",
            "user": "chatbrush",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    async def _m_bots_info(self, args: dict[str, Any]) -> dict[str, Any]:
        bot = {"id": self.bot_id, "app_id": self.app_id, "user_id": self.bot_user_id}
        return {"ok": True, "bot": bot}

    async def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        ts = self._next_ts()
        thread_ts = args.get("thread_ts") or None
        text = str(args.get("text", ""))
        self.messages.append(PostedMessage(channel, ts, text, thread_ts, self.bot_user_id))
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": text,
            "ts": ts,
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    async def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self.responses.append({"ephemeral_to": args.get("user"), **args})
        return {"ok": True, "message_ts": self._next_ts()}

    async def _m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts, name = str(args["channel"]), str(args["timestamp"]), str(args["name"])
        if name in self.reactions_on(channel, ts):
            return {"ok": False, "error": "already_reacted"}
        self.reactions.append(Reaction("add", name, channel, ts))
        return {"ok": True}

    async def _m_reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts, name = str(args["channel"]), str(args["timestamp"]), str(args["name"])
        if name not in self.reactions_on(channel, ts):
            return {"ok": False, "error": "no_reaction"}
        self.reactions.append(Reaction("remove", name, channel, ts))
        return {"ok": True}

    async def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        if str(args.get("include_locale", "")).lower() in ("true", "1"):
            user = {**user, "locale": self.locales.get(user["id"], "en-US")}
        return {"ok": True, "user": user}

    async def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename") or "")
        length = int(args.get("length") or 0)
        if not filename or length <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = UploadedFile(file_id, filename, length)
        upload_url = f"{self.base_url}/upload/v1/{file_id}"
        return {"ok": True, "upload_url": upload_url, "file_id": file_id}

    async def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        items = json.loads(files) if isinstance(files, str) else files
        if not items:
            return {"ok": False, "error": "invalid_arguments"}
        channel = args.get("channel_id") or None
        thread_ts = args.get("thread_ts") or None
        comment = args.get("initial_comment") or None
        done: list[dict[str, Any]] = []
        for item in items:
            upload = self.uploads.get(str(item.get("id")))
            if upload is None or upload.data is None:
                return {"ok": False, "error": "file_not_found"}
            upload.title = item.get("title") or upload.filename
            upload.channel, upload.thread_ts, upload.initial_comment = channel, thread_ts, comment
            done.append({"id": upload.id, "title": upload.title})
        if channel:
            # Slack shares the files as one message from the bot in the channel/thread.
            ts = self._next_ts()
            self.messages.append(
                PostedMessage(
                    channel, ts, comment or "", thread_ts, self.bot_user_id, [d["id"] for d in done]
                )
            )
        return {"ok": True, "files": done}

    async def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        mine = [
            {
                "type": "message",
                "user": m.user,
                "bot_id": self.bot_id,
                "text": m.text,
                "ts": m.ts,
                **({"thread_ts": m.thread_ts} if m.thread_ts else {}),
            }
            for m in self.messages
            if m.channel == channel
        ]
        thread = [
            m
            for m in [*self.history.get(channel, []), *mine]
            if m.get("ts") == ts or m.get("thread_ts") == ts
        ]
        if not any(m.get("ts") == ts for m in thread):
            return {"ok": False, "error": "thread_not_found"}
        thread.sort(key=lambda m: float(m["ts"]))
        return {"ok": True, "messages": thread, "has_more": False}

    async def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ws_url = self.base_url.replace("http://", "ws://") + "/socket"
        return {"ok": True, "url": ws_url}

    # ------------------------------------------------------------------ files
    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="not found")
        upload.data = await request.read()
        upload.upload_authorization = request.headers.get("Authorization")
        await self._notify()
        return web.Response(text=f"OK - {len(upload.data)}")

    async def _download(self, request: web.Request) -> web.Response:
        team_file = request.match_info["team_file"]
        hosted = self.files.get(team_file.split("-", 1)[-1])
        if hosted is None:
            return web.Response(status=404, text="file not found")
        auth = request.headers.get("Authorization")
        hosted.downloads.append(auth)
        await self._notify()
        gate = self._held.get("files.download")
        if gate is not None:
            await gate.wait()
        if hosted.redirect_to:
            raise web.HTTPFound(hosted.redirect_to)
        if auth != f"Bearer {self.bot_token}":
            # What files.slack.com really does without a valid token.
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        return web.Response(body=hosted.data, content_type=hosted.mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({"hook": request.match_info["hook"], **body})
        await self._notify()
        return web.Response(text="ok")

    def response_url(self) -> str:
        return f"{self.base_url}/commands/{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ Socket Mode
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._socket_ready.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    fut = self._acks.pop(str(data.get("envelope_id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_ready.clear()
        return ws

    async def socket_send(
        self, payload: Mapping[str, Any], kind: str = "events_api", retry_attempt: int = 0
    ) -> dict[str, Any]:
        """Deliver one envelope over Socket Mode and return the app's acknowledgement."""
        await self._socket_ready.wait()
        envelope_id = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = fut
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "payload": dict(payload),
                "type": kind,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        return await fut


async def _request_args(request: web.Request) -> dict[str, Any]:
    """Web API arguments from the query, a form body or a JSON body, like Slack reads them."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            args.update(await request.json())
        elif ctype == "multipart/form-data":
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            raw = await request.text()
            args.update(dict(parse_qsl(raw, keep_blank_values=True)))
    return args


# ---------------------------------------------------------------------- events
def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to an HTTP delivery: the v0 HMAC-SHA256 request signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


_event_ids = itertools.count(1)
_message_ts = itertools.count(1)


def new_ts() -> str:
    """A fresh message ``ts`` for a user message (distinct from the fake's own)."""
    n = next(_message_ts)
    return f"{1_650_000_000 + n}.{n:06d}"


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = "T111",
    api_app_id: str = "A111",
    bot_user_id: str = "UBOT",
    event_id: str | None = None,
) -> dict[str, Any]:
    """Wrap an inner event in the ``event_callback`` envelope Slack delivers."""
    return {
        "token": "verification_token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):010d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-fake",
    }


def message_event(
    text: str,
    *,
    channel: str = "C111",
    user: str = "U111",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    channel_type: str = "channel",
    kind: str = "message",
    subtype: str | None = None,
    team: str = "T111",
) -> dict[str, Any]:
    """A user's ``message`` (or ``app_mention`` with ``kind``) in the recorded shape."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "blocks": [
            {
                "type": "rich_text",
                "block_id": "b1",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                ],
            }
        ],
        "client_msg_id": str(uuid.uuid4()),
        "channel": channel,
        "event_ts": ts,
    }
    if kind == "message":
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    if files:
        event["files"] = files
        event["upload"] = False
        event["display_as_bot"] = False
        if kind == "message":
            subtype = subtype or "file_share"
    if subtype:
        event["subtype"] = subtype
    return event


def slash_command(
    text: str,
    *,
    response_url: str,
    command: str = "/chatbrush",
    channel: str = "C111",
    user: str = "U111",
    team_id: str = "T111",
    channel_name: str = "general",
) -> dict[str, str]:
    """The form fields of a slash-command request."""
    return {
        "token": "verification_token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A111",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex[:8]}",
    }
