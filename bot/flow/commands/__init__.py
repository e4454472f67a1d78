"""The commands users can type, in one place so adapters can register and parse them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.kit.i18n import N_
from bot.policy.chat_settings import canonical_name


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    description: str
    admin_only: bool = False
    #: acts on one conversation, so it must be clear which one it was typed in
    thread_scoped: bool = False
    #: its argument is an instruction, so "each make it white" typed bare is this command
    takes_instruction: bool = False
    #: words it takes after its name (besides a number), so "forget confirm" in a Slack
    #: mention is read as the command, not as a prompt
    words: tuple[str, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "/help", N_("how to use the bot")),
    CommandSpec("new", "/new", N_("start a fresh conversation"), thread_scoped=True),
    CommandSpec("each", "/each <instruction>", N_("the same edit on each of several pictures "
                "instead of combining them (with them, or replying to an album; "
                "“each consistent …” keeps them alike)"), takes_instruction=True),
    CommandSpec("undo", "/undo [n]", N_("go back n versions (default 1)"),
                thread_scoped=True),
    CommandSpec("history", "/history", N_("list the versions in this conversation"),
                thread_scoped=True),
    CommandSpec("resend", "/resend", N_("send the newest picture again (also one that could "
                "not be delivered)"), thread_scoped=True),
    CommandSpec("reset", "/reset", N_("forget this conversation (admins in groups)"),
                thread_scoped=True),
    CommandSpec("export", "/export", N_("this conversation as a zip: pictures, prompts, who "
                "asked, the version tree"), thread_scoped=True),
    CommandSpec("forget", "/forget", N_("remove the prompts and pictures you sent (asks first)"),
                words=("confirm",)),
    CommandSpec("usage", "/usage", N_("what you and this chat spent today and this month")),
    CommandSpec("stats", "/stats", N_("bot-wide numbers (operators)"), admin_only=True),
    CommandSpec("settings", "/settings [name value]", N_("this chat's settings; admins change "
                "them (aspect ratio, size, model, language, budgets)")),
)
COMMAND_NAMES = frozenset(c.name for c in COMMANDS)
INSTRUCTION_COMMANDS = frozenset(c.name for c in COMMANDS if c.takes_instruction)
#: ``/start`` is what Telegram clients send first; it is an alias of ``/help``.
ALIASES = {"start": "help"}

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z_]+)(?:@(?P<bot>\w+))?(?:\s+(?P<args>.*))?$", re.S)


@dataclass(frozen=True)
class Command:
    name: str
    args: str = ""


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """``/undo@mybot 2`` → ``Command("undo", "2")``; ``None`` for anything else.

    A command addressed to another bot (``/undo@otherbot``) is not ours. Unknown
    commands are returned too so the engine can answer them with help.
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
