"""A fake Discord on 127.0.0.1: the gateway over a real WebSocket and the REST routes
discord.py calls, recording what the bot sends.

Where the shapes come from (Discord's developer documentation, cross-checked with the
TypedDicts discord.py ships in ``discord/types/``):

- gateway opcodes and the HELLO / IDENTIFY / RESUME / RECONNECT / heartbeat exchange:
  https://discord.com/developers/docs/topics/gateway and ``.../topics/opcodes-and-status-codes``
- READY (``v, user, guilds, session_id, resume_gateway_url, application{id, flags}``):
  https://discord.com/developers/docs/topics/gateway-events#ready
- GUILD_CREATE (a guild object with ``channels``, ``threads``, ``roles``, ``members``):
  https://discord.com/developers/docs/topics/gateway-events#guild-create and
  ``.../resources/guild#guild-object``
- the message and attachment objects (MESSAGE_CREATE and REST):
  https://discord.com/developers/docs/resources/message#message-object
- the interaction object (``id, application_id, type, data, guild_id, channel, member
  {permissions}, user, token, version, locale, guild_locale, app_permissions``) and the
  callback answer with ``with_response``:
  https://discord.com/developers/docs/interactions/receiving-and-responding
- the 429 body (``message, retry_after, global``) and the ``X-RateLimit-*`` headers:
  https://discord.com/developers/docs/topics/rate-limits

A person's message is kept in the channel's history whether or not a bot is connected
(what the bot catches up on after a restart) and dispatched to the connected gateway.
Without the message-content intent its content, attachments and embeds arrive empty unless
it mentions the bot, replies to it or is a DM, as Discord does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

DISCORD_EPOCH_MS = 1_420_070_400_000
#: Gateway intents (topics/gateway#gateway-intents)
MESSAGE_CONTENT_INTENT = 1 << 15
#: permission bits (topics/permissions)
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16)  # view, send, files, history
HEARTBEAT_INTERVAL_MS = 41_250

_sequence = itertools.count(1)


def snowflake() -> str:
    """Milliseconds since Discord's epoch, shifted, plus a counter: ordered like time."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_sequence) & 0x3FFFFF))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    """JSON as Discord sends it: ``Content-Type: application/json`` exactly (discord.py
    decodes nothing else)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def user_object(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    """resources/user#user-object"""
    return {"id": user_id, "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}


@dataclass
class Sent:
    """One message the bot created: in a channel, or as an interaction follow-up."""

    id: str
    channel_id: str
    content: str
    files: list[tuple[str, bytes]]
    reply_to: str | None
    via: str  # "channel" or "followup"


@dataclass
class Guild:
    id: str
    owner_id: str
    preferred_locale: str = "en-US"
    channels: list[str] = field(default_factory=list)
    threads: dict[str, str] = field(default_factory=dict)  # thread id -> parent id
    #: user id -> permission bits of the member's role
    members: dict[str, int] = field(default_factory=dict)


class FakeDiscord:
    """See the module docstring. ``async with FakeDiscord() as discord:``."""

    def __init__(self) -> None:
        self.bot_token = "fake-discord-token"
        self.application_id = snowflake()
        self.bot_user = user_object(self.application_id, "Chatbrush", bot=True)
        self.users: dict[str, dict[str, Any]] = {}
        self.guilds: dict[str, Guild] = {}
        self.channel_guild: dict[str, str | None] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.files: dict[str, bytes] = {}
        #: attachment links are signed and expire (``ex``): links of an older generation 404
        self.link_generation = 1
        self.downloads: list[str] = []
        self.sent: list[Sent] = []
        self.typing: list[str] = []
        self.callbacks: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.identifies: list[int] = []  # the intents of each IDENTIFY
        self.resumes = 0
        self._tokens: dict[str, str] = {}  # interaction token -> its channel
        self.rate_limited: list[str] = []
        self._limits: list[tuple[str, str, float]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._session = ""
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    # ------------------------------------------------------------------ set-up
    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        api = "/api/v10"
        routes = [
            ("GET", "/gateway", self._get_gateway), ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/users/@me", self._me), ("GET", "/oauth2/applications/@me", self._app),
            ("PUT", "/applications/{app}/commands", self._put_commands),
            ("POST", "/channels/{channel}/messages", self._post_message),
            ("GET", "/channels/{channel}/messages", self._get_messages),
            ("GET", "/channels/{channel}/messages/{message}", self._get_message),
            ("POST", "/channels/{channel}/typing", self._typing),
            ("POST", "/interactions/{id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._followup),
            ("GET", "/guilds/{guild}", self._get_guild),
            ("GET", "/guilds/{guild}/members/{user}", self._get_member),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, self._limited(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.base.removeprefix('http://')}/gateway"

    def add_user(self, user_id: str, name: str) -> None:
        self.users[user_id] = user_object(user_id, name)

    def add_guild(self, guild_id: str, *, owner_id: str, channels: list[str],
                  locale: str = "en-US") -> Guild:
        guild = Guild(guild_id, owner_id, locale, list(channels))
        self.guilds[guild_id] = guild
        for channel in channels:
            self.channel_guild[channel] = guild_id
        return guild

    def add_member(self, guild_id: str, user_id: str, *, permissions: int = MEMBER_PERMISSIONS
                   ) -> None:
        self.guilds[guild_id].members[user_id] = permissions

    def add_thread(self, guild_id: str, thread_id: str, parent_id: str) -> None:
        self.guilds[guild_id].threads[thread_id] = parent_id
        self.channel_guild[thread_id] = guild_id

    def rate_limit_next(self, method: str, path_part: str, *, retry_after: float) -> None:
        """Answer the next ``method`` request whose path contains ``path_part`` with a 429."""
        self._limits.append((method, path_part, retry_after))

    # ------------------------------------------------------------------ people act
    def host_file(self, data: bytes, filename: str, content_type: str = "image/png"
                  ) -> dict[str, Any]:
        """An attachment object (resources/message#attachment-object) served by the fake."""
        attachment_id = snowflake()
        self.files[attachment_id] = data
        url = f"{self.base}/attachments/{attachment_id}/{filename}?ex={self.link_generation}"
        return {"id": attachment_id, "filename": filename, "size": len(data), "url": url,
                "proxy_url": url, "content_type": content_type, "width": 40, "height": 30}

    async def say(self, channel_id: str, user_id: str, content: str, *,
                  files: list[dict[str, Any]] | None = None, reply_to: str | None = None,
                  mention_bot: bool = False) -> dict[str, Any]:
        """A person posts a message: kept in history, dispatched if a bot is connected."""
        if mention_bot:
            content = f"<@{self.bot_user['id']}> {content}"
        message = self._message(channel_id, self.users[user_id], content, files or [],
                                reply_to)
        self.history.setdefault(channel_id, []).append(message)
        await self.dispatch("MESSAGE_CREATE", self._as_delivered(message))
        return message

    async def slash(self, channel_id: str, user_id: str, name: str, *,
                    options: dict[str, Any] | None = None,
                    files: dict[str, dict[str, Any]] | None = None,
                    locale: str = "en-US") -> dict[str, Any]:
        """A person runs one of the bot's slash commands (an INTERACTION_CREATE)."""
        guild_id = self.channel_guild.get(channel_id)
        opts = [{"name": k, "type": 3 if isinstance(v, str) else 4, "value": v}
                for k, v in (options or {}).items()]
        opts += [{"name": k, "type": 11, "value": a["id"]} for k, a in (files or {}).items()]
        data: dict[str, Any] = {"id": snowflake(), "name": name, "type": 1, "options": opts}
        if files:
            data["resolved"] = {"attachments": {a["id"]: a for a in files.values()}}
        interaction: dict[str, Any] = {
            "id": snowflake(), "application_id": self.application_id, "type": 2,
            "token": f"itoken-{snowflake()}", "version": 1, "data": data,
            "channel_id": channel_id, "channel": {"id": channel_id, "type": self._type(channel_id)},
            "locale": locale, "app_permissions": str(MEMBER_PERMISSIONS), "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "authorizing_integration_owners": {}, "context": 0 if guild_id else 1,
        }
        user = self.users[user_id]
        if guild_id:
            guild = self.guilds[guild_id]
            interaction["guild_id"] = guild_id
            interaction["guild_locale"] = guild.preferred_locale
            interaction["member"] = {**self._member(guild, user_id), "user": user,
                                     "permissions": str(self._permissions(guild, user_id))}
        else:
            interaction["user"] = user
        self._tokens[interaction["token"]] = channel_id
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    def _type(self, channel_id: str) -> int:
        """channel types (resources/channel#channel-object-channel-types)"""
        guild_id = self.channel_guild.get(channel_id)
        if guild_id is None:
            return 1  # DM
        return 11 if channel_id in self.guilds[guild_id].threads else 0

    def expire_links(self) -> None:
        """A day has passed: every attachment link handed out so far stops working."""
        self.link_generation += 1

    def _fresh(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as REST returns it now: its attachment links signed anew."""
        attachments = [{**a, "url": a["url"].split("?")[0] + f"?ex={self.link_generation}"}
                       for a in message.get("attachments") or ()]
        return {**message, "attachments": attachments}

    async def request_reconnect(self) -> None:
        """op 7: the gateway asks the client to reconnect (and resume)."""
        for ws in list(self._sockets):
            await ws.send_json({"op": 7, "d": None})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            self._seq += 1
            await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    @property
    def connected(self) -> bool:
        return bool(self._sockets)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 20) -> None:
        """Until ``predicate()`` holds after something the bot did."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def sent_to(self, channel_id: str) -> list[Sent]:
        return [s for s in self.sent if s.channel_id == channel_id]

    # ------------------------------------------------------------------ shapes
    def _message(self, channel_id: str, author: dict[str, Any], content: str,
                 files: list[dict[str, Any]], reply_to: str | None) -> dict[str, Any]:
        """resources/message#message-object (type 19 is a reply)."""
        guild_id = self.channel_guild.get(channel_id)
        mentions = [self.bot_user] if f"<@{self.bot_user['id']}>" in content else []
        message: dict[str, Any] = {
            "id": snowflake(), "channel_id": channel_id, "author": author, "content": content,
            "timestamp": _now(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": mentions, "mention_roles": [],
            "attachments": files, "embeds": [], "pinned": False, "type": 0, "flags": 0,
            "components": [],
        }
        if guild_id:
            message["guild_id"] = guild_id
        if reply_to:
            referenced = self._find(channel_id, reply_to)
            message["type"] = 19
            message["message_reference"] = {"type": 0, "message_id": reply_to,
                                            "channel_id": channel_id, "guild_id": guild_id}
            message["referenced_message"] = referenced
            if referenced and referenced["author"]["id"] == self.bot_user["id"]:
                message["mentions"] = [self.bot_user]  # a reply pings its author
        return message

    def _as_delivered(self, message: dict[str, Any]) -> dict[str, Any]:
        """MESSAGE_CREATE adds ``member`` in guilds; without the content intent, guild
        messages not addressed to the bot come without content, attachments and embeds."""
        delivered = dict(message)
        guild_id = message.get("guild_id")
        if guild_id:
            guild = self.guilds[guild_id]
            delivered["member"] = self._member(guild, message["author"]["id"])
            intents = self.identifies[-1] if self.identifies else 0
            addressed = any(u["id"] == self.bot_user["id"] for u in message["mentions"])
            if not intents & MESSAGE_CONTENT_INTENT and not addressed:
                delivered.update(content="", attachments=[], embeds=[])
        return delivered

    def _member(self, guild: Guild, user_id: str) -> dict[str, Any]:
        """resources/guild#guild-member-object; one role per member, named by its bits."""
        bits = guild.members.get(user_id, MEMBER_PERMISSIONS)
        roles = [] if bits == MEMBER_PERMISSIONS else [f"{guild.id}{bits}"]
        return {"roles": roles, "joined_at": _now(), "deaf": False, "mute": False,
                "flags": 0, "nick": None}

    def _permissions(self, guild: Guild, user_id: str) -> int:
        return guild.members.get(user_id, MEMBER_PERMISSIONS)

    def _guild_object(self, guild: Guild) -> dict[str, Any]:
        roles = [{"id": guild.id, "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS),
                  "position": 0, "color": 0, "hoist": False, "managed": False,
                  "mentionable": False, "flags": 0}]
        for bits in sorted(set(guild.members.values()) - {MEMBER_PERMISSIONS}):
            roles.append({**roles[0], "id": f"{guild.id}{bits}", "name": f"r{bits}",
                          "permissions": str(bits), "position": 1})
        channels = [{"id": c, "type": 0, "name": f"c{c[-4:]}", "guild_id": guild.id,
                     "position": i, "permission_overwrites": []}
                    for i, c in enumerate(guild.channels)]
        threads = [{"id": t, "type": 11, "name": f"t{t[-4:]}", "guild_id": guild.id,
                    "parent_id": p, "owner_id": guild.owner_id, "message_count": 0,
                    "member_count": 1, "thread_metadata": {
                        "archived": False, "auto_archive_duration": 1440,
                        "archive_timestamp": _now(), "locked": False}}
                   for t, p in guild.threads.items()]
        return {"id": guild.id, "name": f"g{guild.id[-4:]}", "icon": None,
                "owner_id": guild.owner_id, "preferred_locale": guild.preferred_locale,
                "roles": roles, "emojis": [], "stickers": [], "features": [],
                "channels": channels, "threads": threads, "members": [], "voice_states": [],
                "presences": [], "member_count": len(guild.members) + 1, "large": False,
                "unavailable": False, "joined_at": _now(), "verification_level": 0,
                "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0, "system_channel_flags": 0}

    def _find(self, channel_id: str, message_id: str) -> dict[str, Any] | None:
        for message in self.history.get(channel_id, ()):
            if message["id"] == message_id:
                return message
        return None

    # ------------------------------------------------------------------ gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        try:
            async for frame in ws:
                payload = json.loads(frame.data)
                await self._on_op(ws, payload.get("op"), payload.get("d"))
        finally:
            self._sockets.discard(ws)
            await self._notify()
        return ws

    async def _on_op(self, ws: web.WebSocketResponse, op: int, data: Any) -> None:
        if op == 1:  # heartbeat
            await ws.send_json({"op": 11})
        elif op == 2:  # identify: READY, then each guild
            if data.get("token") != self.bot_token:
                await ws.close(code=4004)
                return
            self.identifies.append(int(data.get("intents") or 0))
            self._sockets = {ws}
            self._session = snowflake()
            await self.dispatch("READY", {
                "v": 10, "user": self.bot_user, "session_id": self._session,
                "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
                "application": {"id": self.application_id, "flags": 0},
            })
            for guild in self.guilds.values():
                await self.dispatch("GUILD_CREATE", self._guild_object(guild))
        elif op == 6:  # resume: nothing was missed between the reconnect and now
            self.resumes += 1
            self._sockets = {ws}
            await self.dispatch("RESUMED", {})
        await self._notify()

    # ------------------------------------------------------------------ REST
    def _limited(self, handler: Callable[[web.Request], Any]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") not in (f"Bot {self.bot_token}", None):
                return _json({"message": "401: Unauthorized", "code": 0}, status=401)
            for limit in self._limits:
                method, part, retry_after = limit
                if request.method == method and part in request.path:
                    self._limits.remove(limit)
                    self.rate_limited.append(request.path)
                    return self._too_many(retry_after)
            response: web.StreamResponse = await handler(request)
            await self._notify()
            return response
        return wrapped

    @staticmethod
    def _too_many(retry_after: float) -> web.Response:
        headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                   "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                   "X-RateLimit-Bucket": "fake-bucket", "X-RateLimit-Scope": "user",
                   "Retry-After": str(max(1, round(retry_after)))}
        body = {"message": "You are being rate limited.", "retry_after": retry_after,
                "global": False}
        return _json(body, status=429, headers=headers)

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _app(self, request: web.Request) -> web.Response:
        """resources/application#application-object"""
        return _json({
            "id": self.application_id, "name": "Chatbrush", "icon": None, "description": "",
            "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": user_object(snowflake(), "owner"), "team": None, "flags": 0,
            "bot": self.bot_user, "interactions_endpoint_url": None, "summary": "",
        })

    async def _put_commands(self, request: web.Request) -> web.Response:
        self.commands = await request.json()
        return _json([{**c, "id": snowflake(), "application_id": self.application_id,
                                   "version": snowflake()} for c in self.commands])

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], list]:
        if not request.content_type.startswith("multipart/"):
            return await request.json(), []
        payload: dict[str, Any] = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                payload = json.loads(await part.text())  # type: ignore[union-attr]
            else:
                files.append((part.filename or "", await part.read()))  # type: ignore[union-attr]
        return payload, files

    def _bot_message(self, channel_id: str, payload: dict[str, Any],
                     files: list[tuple[str, bytes]], via: str) -> dict[str, Any]:
        reference = payload.get("message_reference") or {}
        reply_to = str(reference["message_id"]) if reference.get("message_id") else None
        attachments = [self.host_file(data, name) for name, data in files]
        message = self._message(channel_id, self.bot_user, payload.get("content") or "",
                                attachments, reply_to)
        self.history.setdefault(channel_id, []).append(message)
        self.sent.append(Sent(message["id"], channel_id, message["content"], files,
                              reply_to, via))
        return message

    async def _post_message(self, request: web.Request) -> web.Response:
        payload, files = await self._read_body(request)
        return _json(
            self._bot_message(request.match_info["channel"], payload, files, "channel"))

    async def _get_messages(self, request: web.Request) -> web.Response:
        """Newest first, as Discord answers; ``after`` selects later messages."""
        messages = self.history.get(request.match_info["channel"], [])
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "50"))
        chosen = [m for m in messages if int(m["id"]) > after][:limit]
        return _json([self._fresh(m) for m in reversed(chosen)])

    async def _get_message(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["channel"], request.match_info["message"])
        if found is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        return _json(self._fresh(found))

    async def _typing(self, request: web.Request) -> web.Response:
        self.typing.append(request.match_info["channel"])
        return web.Response(status=204)

    async def _callback(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.callbacks.append({"id": request.match_info["id"], **body})
        return _json({
            "interaction": {"id": request.match_info["id"], "type": 2,
                            "response_message_id": snowflake(),
                            "response_message_loading": body.get("type") == 5,
                            "response_message_ephemeral": False},
            "resource": {"type": body.get("type")},
        })

    async def _followup(self, request: web.Request) -> web.Response:
        """Follow-ups go to the interaction's channel (kept by its token)."""
        token = request.match_info["token"]
        channel_id = self._tokens.get(token, "")
        payload, files = await self._read_body(request)
        return _json(self._bot_message(channel_id, payload, files, "followup"))

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self.guilds.get(request.match_info["guild"])
        if guild is None:
            return _json({"message": "Unknown Guild", "code": 10004}, status=404)
        return _json(self._guild_object(guild))

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self.guilds[request.match_info["guild"]]
        user_id = request.match_info["user"]
        return _json({**self._member(guild, user_id), "user": self.users[user_id]})

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        self.downloads.append(request.path_qs)
        if data is None or request.query.get("ex") != str(self.link_generation):
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=data, content_type="application/octet-stream")
