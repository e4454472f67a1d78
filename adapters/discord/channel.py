"""Where the core's answers go in Discord: a reply in the same channel or thread, pictures
as attachments (Discord keeps the bytes, and so their Content Credentials), the typing
indicator while a request is worked on; a slash command's answers as its follow-ups."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.core.events import Progress, Sender
from bot.kit.image_types import OutputImage

log = logging.getLogger(__name__)

#: Discord's message length limit
MAX_CONTENT = 2000
#: the upload limit of a server without boosts (the smallest a bot can count on)
MAX_FILE_BYTES = 10 * 1024 * 1024
#: the typing indicator lasts ten seconds: renewed a little before, for at most this long
TYPING_EVERY = 8.0
TYPING_AT_MOST = 600.0


def chunks(text: str) -> list[str]:
    text = text or "…"
    return [text[i:i + MAX_CONTENT] for i in range(0, len(text), MAX_CONTENT)]


def admin_bits(permissions: discord.Permissions) -> bool:
    """Server admins are the chat admins: Administrator or Manage Server."""
    return permissions.administrator or permissions.manage_guild


class DiscordChannel:
    """Answers one Discord message with replies to it (see the module docstring)."""

    max_file_bytes = MAX_FILE_BYTES

    def __init__(self, client: discord.Client, *, channel_id: int, guild_id: int | None,
                 reply_to: int | None, permissions: tuple[str, int] | None = None) -> None:
        self.client = client
        self.channel_id = channel_id
        self.guild_id = guild_id
        self.reply_to = reply_to
        #: (user id, permission bits) Discord sent with an interaction
        self.permissions = permissions
        self._typing: asyncio.Task[None] | None = None

    def _target(self) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(self.channel_id, guild_id=self.guild_id)

    def _reference(self) -> discord.MessageReference | None:
        if self.reply_to is None:
            return None
        return discord.MessageReference(message_id=self.reply_to, channel_id=self.channel_id,
                                        fail_if_not_exists=False)

    async def _send(self, content: str, files: Sequence[discord.File] = ()) -> str:
        extra: dict[str, Any] = {}
        reference = self._reference()
        if reference is not None:
            extra["reference"] = reference
        if files:
            extra["files"] = list(files)
        message = await self._target().send(
            content=content or None, allowed_mentions=discord.AllowedMentions.none(), **extra)
        return str(message.id)

    async def send_text(self, text: str) -> list[str]:
        return [await self._send(part) for part in chunks(text)]

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None, *,
                          as_files: bool = False) -> list[str]:
        """One message per picture, the caption with the first: a reply to a picture then
        names exactly one version (always files: Discord never recompresses them)."""
        if not images:
            return await self.send_text(caption) if caption else []
        ids = []
        for index, image in enumerate(images):
            file = discord.File(io.BytesIO(image.data),
                                filename=f"chatbrush-{index + 1}.{image.extension}")
            text = (caption or "")[:MAX_CONTENT] if index == 0 else ""
            ids.append(await self._send(text, [file]))
        return ids

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        file = discord.File(io.BytesIO(data), filename=filename)
        return [await self._send((caption or "")[:MAX_CONTENT], [file])]

    async def progress(self, state: Progress) -> None:
        if state is Progress.WORKING and self._typing is None:
            self._typing = asyncio.create_task(self._keep_typing())
        elif state in (Progress.DONE, Progress.FAILED) and self._typing is not None:
            self._typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing
            self._typing = None

    async def _keep_typing(self) -> None:
        """Cosmetic: a failure is logged, never raised into the turn."""
        try:
            async with asyncio.timeout(TYPING_AT_MOST):
                while True:
                    await self.client.http.send_typing(self.channel_id)
                    await asyncio.sleep(TYPING_EVERY)
        except (discord.HTTPException, TimeoutError) as exc:
            log.info("typing not shown in %s: %s", self.channel_id, exc)

    async def is_admin(self, sender: Sender) -> bool:
        """Owner, Administrator or Manage Server (a DM's only person runs it). Interactions
        carry the member's permissions; for messages the server and member are asked."""
        if self.guild_id is None:
            return True
        if self.permissions is not None and self.permissions[0] == sender.id:
            return admin_bits(discord.Permissions(self.permissions[1]))
        try:
            guild = await self.client.fetch_guild(self.guild_id)
            member = await guild.fetch_member(int(sender.id))
        except discord.HTTPException as exc:
            log.warning("Discord: no member %s in %s: %s", sender.id, self.guild_id, exc)
            return False
        return admin_bits(member.guild_permissions)


class InteractionChannel(DiscordChannel):
    """A slash command's answers, as follow-ups of its (deferred) interaction; once its
    token has expired (15 minutes, a restart later) as plain messages in the channel."""

    def __init__(self, client: discord.Client, *, channel_id: int, guild_id: int | None,
                 application_id: int, token: str,
                 permissions: tuple[str, int] | None = None) -> None:
        super().__init__(client, channel_id=channel_id, guild_id=guild_id, reply_to=None,
                         permissions=permissions)
        self.webhook = discord.Webhook.partial(application_id, token, client=client)

    async def _send(self, content: str, files: Sequence[discord.File] = ()) -> str:
        try:
            message = await self.webhook.send(
                content=content or discord.utils.MISSING, files=list(files),
                wait=True, allowed_mentions=discord.AllowedMentions.none())
        except discord.NotFound:  # the interaction token expired
            for file in files:
                file.reset()
            return await super()._send(content, files)
        return str(message.id)
