"""What a command is: its spec (as users see it in /help and the platforms' menus) and
the command as typed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    description: str
    #: for the bot's operators only (``CHATBRUSH_ADMINS``): the router refuses others
    admin_only: bool = False
    #: acts on one conversation, so it must be clear which one it was typed in
    thread_scoped: bool = False
    #: its argument is an instruction, so "each make it white" typed bare is this command
    takes_instruction: bool = False
    #: words it takes after its name (besides a number), so "forget confirm" in a Slack
    #: mention is read as the command, not as a prompt
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    """A command as typed: ``/undo 2`` → ``Command("undo", "2")``."""

    name: str
    args: str = ""
