"""The router: decides what an event is and calls the service for it.

An event an earlier attempt got into is *resumed* from its stored progress; otherwise it
is a *command* (found in the registry of :mod:`bot.flow.commands`, its spec enforced
here), a caption asking for the same edit on *each* picture (:mod:`bot.flow.each_turns`),
or a plain *edit* turn (:class:`bot.flow.turns.TurnService`). Between the decision and
the service every event passes the middleware chain (:mod:`bot.flow.middleware`). The
services never dispatch; this is the one place that does.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.chat_settings import ChatSettings
from bot.core.errors import LazyText, UserFacingError
from bot.core.events import ChatKey
from bot.core.store import InboxStatus
from bot.core.work import Work
from bot.flow.commands import ROUTES, Command, CommandRoute, parse_command
from bot.flow.commands.command_context import CommandContext
from bot.flow.commands.help_text import help_text
from bot.flow.each_turns import EachRequest, parse_each, run_linked
from bot.flow.each_wording import caption_asks_for_each
from bot.flow.middleware import Middleware, Routed, RouteKind, default_chain, run_chain
from bot.flow.turns import TurnService
from bot.kit.i18n import N_
from bot.policy.access import AdminCache

UNKNOWN_COMMAND = N_("I don't know {command}. Try {help}.")
WHICH_CONVERSATION = N_("I can't tell which conversation {command} is meant for here: type "
                        "it inside the thread you want to change.")
OPERATORS_ONLY = N_("Sorry, that command is for the bot's operators.")


class Router:
    """See the module docstring. One per process, in front of the turn service."""

    def __init__(self, turns: TurnService, *,
                 middleware: Sequence[Middleware] | None = None,
                 commands: Sequence[CommandRoute] = ROUTES) -> None:
        self.turns = turns
        self.middleware = tuple(middleware) if middleware is not None else default_chain(turns)
        #: the command registry: each command's spec and handler, by name
        self.commands = {route.spec.name: route for route in commands}

    @property
    def admins(self) -> AdminCache:
        return self.turns.admins

    async def chat_settings(self, chat: ChatKey) -> ChatSettings:
        return await self.turns.choices.chat_settings(chat)

    async def salvage(self, work: Work, *, reason: str) -> None:
        await self.turns.salvage(work, reason=reason)

    async def handle(self, work: Work) -> InboxStatus:
        """Handle (or resume) one event; raises only :class:`UserFacingError`,
        :class:`~bot.core.events.InputRefused` and what the intake's fail-safe catches."""
        routed = await self.classify(work)
        return await run_chain(self.middleware, routed, self._dispatch)

    async def classify(self, work: Work) -> Routed:
        """What the event is, and the instruction in it to screen (for a new one)."""
        entry = work.entry
        if entry.answer_turn_id is not None or entry.turn_id is not None:
            return Routed(work, RouteKind.RESUMED)
        text = work.event.text
        command = parse_command(text)
        if command is not None:
            prompt = None
            if command.name == "each" and not await self._linked_turns_stored(work):
                prompt = parse_each(command.args).instruction.strip()
            return Routed(work, RouteKind.COMMAND, command=command, prompt=prompt)
        if caption_asks_for_each(text):
            stored = await self._linked_turns_stored(work)
            return Routed(work, RouteKind.EACH, prompt=None if stored else text.strip())
        return Routed(work, RouteKind.EDIT, prompt=text.strip())

    async def _linked_turns_stored(self, work: Work) -> bool:
        """An /each an earlier attempt recorded: resumed, its instruction screened then."""
        return bool(await self.turns.store.inbox_linked_turns(work.entry.id))

    async def _dispatch(self, routed: Routed) -> InboxStatus:
        work = routed.work
        if routed.kind is RouteKind.RESUMED:
            return await self.turns.resume(work)
        if routed.kind is RouteKind.COMMAND:
            assert routed.command is not None
            return await self._command(work, routed.command)
        if routed.kind is RouteKind.EACH:
            return await run_linked(self.turns, work, EachRequest(work.event.text, typed=False))
        return await self.turns.edit(work)

    async def _command(self, work: Work, command: Command) -> InboxStatus:
        """The command's handler, once its spec allows it here."""
        incoming = work.event
        p = incoming.command_prefix
        route = self.commands.get(command.name)
        if route is None:
            raise UserFacingError(LazyText(UNKNOWN_COMMAND, command=f"{p}{command.name}",
                                           help=f"{p}help"))
        spec = route.spec
        if spec.thread_scoped and incoming.thread_unknown and not incoming.is_private:
            raise UserFacingError(LazyText(WHICH_CONVERSATION, command=f"{p}{command.name}"))
        if spec.admin_only and not self.turns.admins.is_operator(incoming):
            raise UserFacingError(LazyText(OPERATORS_ONLY))
        await route.handler(CommandContext(self.turns, work, command, help_text))
        return InboxStatus.DONE
