"""The commands users can type: each one's spec and handler registered together in
:data:`ROUTES`, in the order /help lists them.

Adapters read the specs (:data:`COMMANDS`, to register them with their platform) and
parse what users type (:func:`parse_command`, :func:`bare_command`); the router
(:mod:`bot.flow.router`) holds these routes as its registry and enforces each spec
(``thread_scoped``, ``admin_only``) before the handler runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.flow.commands import conversation, info, privacy, settings
from bot.flow.commands.command_context import Handler
from bot.flow.commands.spec import Command, CommandSpec
from bot.kit.i18n import N_
from bot.policy.chat_settings import canonical_name


@dataclass(frozen=True)
class CommandRoute:
    """A command's spec and the handler that answers it."""

    spec: CommandSpec
    handler: Handler


ROUTES: tuple[CommandRoute, ...] = (
    CommandRoute(CommandSpec("help", "/help", N_("how to use the bot")), info.help_),
    CommandRoute(CommandSpec("new", "/new", N_("start a fresh conversation"),
                             thread_scoped=True), conversation.new),
    CommandRoute(CommandSpec("each", "/each <instruction>", N_(
        "the same edit on each of several pictures instead of combining them (with them, or "
        "replying to an album; “each consistent …” keeps them alike)"),
        takes_instruction=True), conversation.each),
    CommandRoute(CommandSpec("undo", "/undo [n]", N_("go back n versions (default 1)"),
                             thread_scoped=True), conversation.undo),
    CommandRoute(CommandSpec("history", "/history", N_("list the versions in this conversation"),
                             thread_scoped=True), conversation.history),
    CommandRoute(CommandSpec("resend", "/resend", N_(
        "send the newest picture again (also one that could not be delivered)"),
        thread_scoped=True), conversation.resend),
    CommandRoute(CommandSpec("original", "/original", N_(
        "the model's whole picture of an edit of a marked area, as a file"),
        thread_scoped=True), conversation.original),
    CommandRoute(CommandSpec("reset", "/reset", N_("forget this conversation (admins in groups)"),
                             thread_scoped=True), conversation.reset),
    CommandRoute(CommandSpec("export", "/export", N_(
        "this conversation as a zip: pictures, prompts, who asked, the version tree"),
        thread_scoped=True), privacy.export),
    CommandRoute(CommandSpec("forget", "/forget", N_(
        "remove the prompts and pictures you sent (asks first)"), words=("confirm",)),
        privacy.forget),
    CommandRoute(CommandSpec("usage", "/usage", N_(
        "what you and this chat spent today and this month")), info.usage),
    CommandRoute(CommandSpec("stats", "/stats", N_("bot-wide numbers (operators)"),
                             admin_only=True), info.stats),
    CommandRoute(CommandSpec("settings", "/settings [name value]", N_(
        "this chat's settings; admins change them (aspect ratio, size, model, language, "
        "budgets)")), settings.settings),
)
COMMANDS: tuple[CommandSpec, ...] = tuple(route.spec for route in ROUTES)
COMMAND_NAMES = frozenset(c.name for c in COMMANDS)
INSTRUCTION_COMMANDS = frozenset(c.name for c in COMMANDS if c.takes_instruction)
#: ``/start`` is what Telegram clients send first; it is an alias of ``/help``.
ALIASES = {"start": "help"}

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z_]+)(?:@(?P<bot>\w+))?(?:\s+(?P<args>.*))?$", re.S)


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """``/undo@mybot 2`` → ``Command("undo", "2")``; ``None`` for anything else.

    A command addressed to another bot (``/undo@otherbot``) is not ours. Unknown
    commands are returned too so the router can answer them with help.
    """
    match = _COMMAND.match(text.strip())
    if not match:
        return None
    target = match.group("bot")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    name = match.group("name").lower()
    return Command(ALIASES.get(name, name), (match.group("args") or "").strip())


def bare_command(text: str) -> str | None:
    """Turn ``"undo 2"`` (a Slack mention's text) into ``"/undo 2"`` when it is a command.

    Only a known command word followed by nothing or a short argument counts, so a prompt
    like "reset the colours to the original" stays a prompt.
    """
    words = text.strip().split()
    if not words or words[0].lower().lstrip("/") not in COMMAND_NAMES | set(ALIASES):
        return None
    name = words[0].lower().lstrip("/")
    if name in INSTRUCTION_COMMANDS:
        return "/" + " ".join([name, *words[1:]])
    spec = next((c for c in COMMANDS if c.name == ALIASES.get(name, name)), None)
    takes = spec.words if spec is not None else ()
    if name == "settings" and len(words) > 1:
        if canonical_name(words[1]) is None:  # "settings of a castle at night" is a prompt
            return None
    elif len(words) > 2 or (len(words) == 2 and not words[1].isdigit()
                            and words[1].lower() not in takes):
        return None
    return "/" + " ".join([name, *words[1:]])


__all__ = ["ALIASES", "COMMANDS", "COMMAND_NAMES", "ROUTES", "Command", "CommandRoute",
           "CommandSpec", "bare_command", "parse_command"]
