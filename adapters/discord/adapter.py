"""Discord: DMs, mentions, replies and slash commands in; edited pictures back as replies.

Built on discord.py's plain :class:`discord.Client` (the gateway for events, the REST API for
sending, discord.py's own per-route and global rate limiting and 429 retries). REST goes to
``DISCORD_API_BASE`` (``discord.http.Route.BASE``, which interaction follow-ups use too) and
the gateway to ``DISCORD_GATEWAY_URL`` (``DiscordWebSocket.DEFAULT_GATEWAY``): both are
class attributes of discord.py, so they hold for the whole process, which runs one Discord
bot.

Store, then acknowledge: a message is translated (:mod:`adapters.discord.translate`) and
awaited into :meth:`bot.core.receiving.Receiver.receive`; a slash command is stored the
same way and only then deferred (Discord's 3 seconds). The gateway does not redeliver what a stopped
bot missed, so every (re)connect catches up from channel history
(:mod:`adapters.discord.catch_up`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl
from aiohttp import web
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord import commands
from adapters.discord.catch_up import CatchUpPlaces
from adapters.discord.channel import DiscordChannel, InteractionChannel
from adapters.discord.settings import DiscordSettings
from adapters.discord.translate import (
    PLATFORM,
    command_to_incoming,
    is_private,
    message_to_incoming,
)
from bot.core.events import Attachment, Channel, Incoming, InputImage, InputRefused, Sender
from bot.core.messages import DOWNLOAD_FAILED, too_large
from bot.core.receiving import IntakeClosed
from bot.kit.i18n import _

if TYPE_CHECKING:
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


def intents_for(group: DiscordSettings) -> discord.Intents:
    """Servers, their messages and DMs; message content only when the operator asks (an
    application without it is disconnected with close code 4014)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = group.discord_message_content
    return intents


class DiscordAdapter:
    """The Discord side of Chatbrush (see the module docstring)."""

    name = PLATFORM

    def __init__(self, settings: Settings, intake: Receiver) -> None:
        group = DiscordSettings.of(settings)
        if group.discord_bot_token is None:
            raise ValueError("DISCORD_BOT_TOKEN is not set")
        self.settings = settings
        self.group = group
        self.intake = intake
        Route.BASE = group.discord_api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(group.discord_gateway_url)
        self.client = discord.Client(intents=intents_for(group), max_messages=None,
                                     guild_ready_timeout=1.0)
        self.tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(
            self.client)
        commands.register(self.tree, self._on_command)
        self.client.event(self.on_message)
        self.client.event(self.on_ready)
        self.client.event(self.on_resumed)
        # a relative path is beside the SQLite file, which deployments keep on a volume
        self.places = CatchUpPlaces(Path(settings.chatbrush_db).parent
                                    / group.discord_catch_up_file)
        self._ready = asyncio.Event()
        self._receiving = False
        self._connection: asyncio.Task[None] | None = None
        self._catching_up = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._downloads: aiohttp.ClientSession | None = None

    @property
    def bot_id(self) -> int:
        user = self.client.user
        return user.id if user is not None else 0

    # ------------------------------------------------------------------ Platform port
    def channel(self, event: Incoming) -> Channel:
        data = event.platform_data
        guild = int(data["guild"]) if data.get("guild") else None
        permissions = ((data["permissions_of"], int(data["permissions"]))
                       if data.get("permissions") else None)
        if data.get("token"):
            return InteractionChannel(self.client, channel_id=int(event.chat.chat_id),
                                      guild_id=guild, application_id=int(data["application"]),
                                      token=data["token"], permissions=permissions)
        reply_to = data.get("reply_to")
        return DiscordChannel(self.client, channel_id=int(event.chat.chat_id), guild_id=guild,
                              reply_to=int(reply_to) if reply_to else None,
                              permissions=permissions)

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        """One attachment, its declared size checked before downloading it; a link that
        expired is renewed from the message it came with."""
        limit = self.settings.chatbrush_max_upload_bytes
        if attachment.size is not None and attachment.size > limit:
            raise InputRefused(too_large(attachment.size, limit, attachment.filename))
        if not attachment.url:
            raise InputRefused(_(DOWNLOAD_FAILED))
        try:
            try:
                data = await self._download(attachment.url, limit)
            except aiohttp.ClientResponseError as exc:
                if exc.status not in (403, 404):
                    raise
                data = await self._download(await self._renewed_url(attachment), limit)
        except (aiohttp.ClientError, discord.HTTPException, TimeoutError) as exc:
            log.info("Discord: download of %s failed: %s", attachment.ref, exc)
            raise InputRefused(_(DOWNLOAD_FAILED)) from exc
        if len(data) > limit:
            raise InputRefused(too_large(None, limit, attachment.filename))
        return [InputImage(data, attachment.mime_type, attachment.filename)]

    async def _download(self, url: str, limit: int) -> bytes:
        async with self._session().get(url) as response:
            response.raise_for_status()
            return await response.content.read(limit + 1)

    async def _renewed_url(self, attachment: Attachment) -> str:
        """The attachment's current link, from its message as Discord returns it now."""
        parts = attachment.ref.split("/")
        if len(parts) != 3:
            raise InputRefused(_(DOWNLOAD_FAILED))
        channel_id, message_id, attachment_id = parts
        message = await self.client.http.get_message(int(channel_id), int(message_id))
        for item in message.get("attachments") or ():
            if str(item.get("id")) == attachment_id:
                return str(item["url"])
        raise InputRefused(_(DOWNLOAD_FAILED))

    async def language_of(self, sender: Sender) -> str | None:
        return None  # events carry it: the interaction's locale, the server's otherwise

    def _session(self) -> aiohttp.ClientSession:
        if self._downloads is None or self._downloads.closed:
            self._downloads = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=120, sock_connect=15))
        return self._downloads

    # ------------------------------------------------------------------ lifecycle
    def mount(self, web_app: web.Application) -> bool:
        return False  # the gateway is an outgoing connection: `web` keeps it open too

    async def start(self, *, webhook: bool) -> None:
        """Log in, register the slash commands, connect; returns once READY arrived."""
        assert self.group.discord_bot_token is not None
        self._receiving = True
        await self.client.login(self.group.discord_bot_token.get_secret_value())
        await self.tree.sync()
        self._connection = asyncio.create_task(self.client.connect(reconnect=True),
                                               name="chatbrush-discord")
        self._connection.add_done_callback(_log_end)
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._connection}, timeout=READY_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
        if self._connection.done():
            ready.cancel()
            self._connection.result()  # raises why it ended (a bad token, intent 4014…)
        if not self._ready.is_set():
            ready.cancel()
            raise TimeoutError("Discord: no READY from the gateway")
        log.info("Discord: connected as %s", self.client.user)

    async def stop_receiving(self) -> None:
        """New events are left to the next start's catch-up (their place is not moved)."""
        self._receiving = False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        if self._connection is not None:
            await asyncio.gather(self._connection, return_exceptions=True)
        if self._downloads is not None:
            await self._downloads.close()

    # ------------------------------------------------------------------ receiving
    async def on_ready(self) -> None:
        self._ready.set()
        self._spawn(self.catch_up())

    async def on_resumed(self) -> None:
        self._spawn(self.catch_up())

    async def on_message(self, message: discord.Message) -> None:
        if self._receiving:
            await self._handle(message)

    async def _handle(self, message: discord.Message) -> None:
        """Store the message if it is for us; then remember it as the channel's place."""
        if message.author.id == self.bot_id:
            return
        event = message_to_incoming(message, self.bot_id)
        channel_id = message.channel.id
        try:
            stored = event is not None and await self.intake.receive(event) is not None
        except IntakeClosed:
            return  # shutting down: the next start catches up from here
        if not stored and not self.places.known(channel_id):
            return  # a channel without conversations is not read on catch-up
        guild = message.guild.id if message.guild else None
        await self.places.reached(channel_id, message.id, guild=guild,
                                  private=is_private(message.channel))

    async def catch_up(self) -> None:
        """Read what arrived while the bot was away, in each recently active channel."""
        async with self._catching_up:
            for channel_id, place in self.places.active().items():
                if not self._receiving:
                    return
                try:
                    await self._catch_up_channel(channel_id, place.after, place.guild,
                                                 private=place.private)
                except discord.HTTPException as exc:
                    log.warning("Discord: could not catch up in %s: %s", channel_id, exc)

    async def _catch_up_channel(self, channel_id: int, after: int, guild: int | None, *,
                                private: bool) -> None:
        channel: Any = self.client.get_channel(channel_id)
        if channel is None:
            kind = discord.ChannelType.private if private else None
            channel = self.client.get_partial_messageable(channel_id, guild_id=guild,
                                                          type=kind)
        history = channel.history(after=discord.Object(after), oldest_first=True,
                                  limit=self.group.discord_catch_up_limit)
        async for message in history:
            if not self._receiving:
                return
            await self._handle(message)

    async def _on_command(self, interaction: discord.Interaction, text: str,
                          files: Sequence[discord.Attachment], starts: bool) -> None:
        """Stored first, then deferred (a "thinking…" answer the follow-ups replace)."""
        if not self._receiving:
            return
        event = command_to_incoming(interaction, text, files, starts=starts)
        try:
            await self.intake.receive(event)
        except IntakeClosed:
            return
        await interaction.response.defer(thinking=True)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _log_end(task: asyncio.Task[None]) -> None:
    """The gateway connection ended for good (discord.py reconnects by itself until then)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("Discord: the gateway connection ended: %r", task.exception())
