"""The bot's slash commands, registered as Discord application commands.

``/edit`` takes an instruction and up to four pictures, ``/each`` the same (one edit per
picture); the others take what their chat form takes after the command word (``/undo 2``,
``/settings ratio 16:9``). Each callback hands the command, in its chat form, to ``on_command``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord import app_commands

#: (interaction, chat form, attachments, whether it starts a conversation)
OnCommand = Callable[[discord.Interaction, str, Sequence[discord.Attachment], bool],
                     Awaitable[None]]

#: the commands that take only words, with the description Discord shows
WORD_COMMANDS = {
    "help": "What I can do and how",
    "new": "Start a new conversation",
    "undo": "Go back one version (or n versions)",
    "history": "The versions of this conversation",
    "reset": "Forget this chat's conversations (server admins)",
    "usage": "What you and this chat have spent",
    "export": "This conversation as a file: pictures, prompts and the version tree",
    "forget": "Delete what you sent me",
    "settings": "This chat's settings (server admins change them)",
}
PICTURE_COMMANDS = {
    "edit": "Edit the attached pictures, or describe a new picture",
    "each": "Give each attached picture the same edit",
}


def register(tree: app_commands.CommandTree[Any], on_command: OnCommand) -> None:
    for name, description in PICTURE_COMMANDS.items():
        tree.add_command(_picture_command(name, description, on_command))
    for name, description in WORD_COMMANDS.items():
        tree.add_command(_word_command(name, description, on_command))


def _picture_command(name: str, description: str, on_command: OnCommand
                     ) -> app_commands.Command[Any, Any, None]:
    @app_commands.describe(instruction="What to change, or the picture to make",
                           image="A picture", image2="Another picture",
                           image3="Another picture", image4="Another picture")
    async def callback(interaction: discord.Interaction, instruction: str,
                       image: discord.Attachment | None = None,
                       image2: discord.Attachment | None = None,
                       image3: discord.Attachment | None = None,
                       image4: discord.Attachment | None = None) -> None:
        files = [f for f in (image, image2, image3, image4) if f is not None]
        text = instruction if name == "edit" else f"/{name} {instruction}"
        await on_command(interaction, text, files, True)

    return app_commands.Command(name=name, description=description, callback=callback)


def _word_command(name: str, description: str, on_command: OnCommand
                  ) -> app_commands.Command[Any, Any, None]:
    @app_commands.describe(arguments="As after the command word in a message")
    async def callback(interaction: discord.Interaction, arguments: str | None = None) -> None:
        await on_command(interaction, f"/{name} {arguments or ''}".strip(), (), name == "new")

    return app_commands.Command(name=name, description=description, callback=callback)
