"""What a command handler works with: the event, its channel, the store, and the turn
service's shared steps — so each command is a small function in a module of its own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.config import Settings
from bot.core.errors import UserFacingError
from bot.core.events import Channel, Incoming, Progress
from bot.core.store import Store
from bot.core.threads import Thread
from bot.core.work import Work
from bot.flow.choices import ChatChoices
from bot.flow.commands.spec import Command
from bot.flow.delivery import Delivery, safe_send
from bot.flow.turns import TurnService
from bot.kit.i18n import _

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandContext:
    turns: TurnService
    work: Work
    command: Command
    #: /help's text for a platform and its command prefix (the router knows the wording)
    help_text: Callable[[str, str], str]

    @property
    def event(self) -> Incoming:
        return self.work.event

    @property
    def channel(self) -> Channel:
        return self.work.channel

    @property
    def store(self) -> Store:
        return self.turns.store

    @property
    def settings(self) -> Settings:
        return self.turns.settings

    @property
    def delivery(self) -> Delivery:
        return self.turns.delivery

    @property
    def choices(self) -> ChatChoices:
        return self.turns.choices

    @property
    def prefix(self) -> str:
        """How users type a command here (``/``, ``<@BOT> ``, ``/chatbrush ``)."""
        return self.event.command_prefix

    async def say(self, text: str) -> list[str]:
        return await safe_send(self.channel, text)

    async def progress(self, state: Progress) -> None:
        """Show the progress signal while a command works (cosmetic: never raises)."""
        try:
            await self.channel.progress(state)
        except Exception:
            log.warning("progress signal %s failed", state.value, exc_info=True)

    async def is_admin(self) -> bool:
        return await self.turns.admins.is_admin(self.event, self.channel)

    async def require_admin(self, refusal: str) -> None:
        if not await self.is_admin():
            raise UserFacingError(refusal)

    async def thread(self) -> Thread:
        """The conversation the command is about: the replied-to message's, the platform
        thread's, or (in a private chat) the current one."""
        store = self.store
        incoming = self.event
        thread: Thread | None = None
        if incoming.reply_to:
            linked = await store.linked_turn(incoming.chat, incoming.reply_to)
            if linked is not None:
                thread = await store.get_thread(linked.thread_id)
        if thread is None and incoming.thread_hint:
            thread = await store.thread_by_key(incoming.chat, incoming.thread_hint)
        if thread is None and incoming.is_private:
            thread = await store.current_thread(incoming.chat)
        if thread is None:
            if incoming.is_private:
                raise UserFacingError(_("There is no conversation yet. Send a photo to start."))
            raise UserFacingError(_("Reply to one of my images with that command so I know "
                                    "which conversation you mean."))
        return thread


Handler = Callable[[CommandContext], Awaitable[None]]
