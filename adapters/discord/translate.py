"""Discord messages and slash commands as the core's events (no I/O).

Which messages could be for the bot (DMs, mentions, replies to it, messages in a Discord
thread it takes part in), which conversation they belong to (a Discord thread is one), and
what they carry (attachments and embedded images, by reference, with the size Discord
declares) — decided from discord.py's objects alone; :mod:`adapters.discord.adapter` does
the receiving, downloading and sending.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import discord

from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender
from bot.flow.commands import bare_command

PLATFORM = "discord"
#: message types that are a person's own words (plain messages and replies)
PERSON_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
THREAD_TYPES = frozenset({discord.ChannelType.public_thread, discord.ChannelType.private_thread,
                          discord.ChannelType.news_thread})
PRIVATE_TYPES = frozenset({discord.ChannelType.private, discord.ChannelType.group})


def clean_text(text: str, bot_id: int) -> str:
    """The prompt as the user meant it: our mention removed, and a bare command word
    (``undo 2``) turned into its ``/undo 2`` form."""
    text = re.sub(rf"<@!?{bot_id}>", " ", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return bare_command(text) or text


def attachment_of(item: discord.Attachment, message: discord.Message | None = None
                  ) -> Attachment:
    """A file by reference, with the size and type Discord declares (checked before any
    download); ``ref`` (``channel/message/attachment``) finds it again once its signed
    link has expired (they last about a day)."""
    mime = (item.content_type or "").split(";")[0].lower()
    if mime.startswith("image/") and "svg" not in mime and "gif" not in mime:
        kind = AttachmentKind.IMAGE
    elif mime.startswith("video/") or "gif" in mime:
        kind = AttachmentKind.VIDEO
    elif not mime:
        kind = AttachmentKind.IMAGE  # Discord could not tell: the bytes decide
    else:
        kind = AttachmentKind.FILE
    ref = f"{message.channel.id}/{message.id}/{item.id}" if message else str(item.id)
    return Attachment(kind, ref=ref, url=item.url, mime_type=mime or None,
                      filename=item.filename, size=item.size)


def embedded_images(embeds: Iterable[discord.Embed]) -> list[Attachment]:
    """Images of embeds (a link Discord previews): inputs like attachments, size unknown."""
    found = []
    for embed in embeds:
        for url in (embed.image.url, embed.thumbnail.url if embed.type == "image" else None):
            if url:
                found.append(Attachment(AttachmentKind.IMAGE, ref=url, url=url))
    return found


def inputs_of(message: discord.Message) -> tuple[Attachment, ...]:
    return (*(attachment_of(a, message) for a in message.attachments),
            *embedded_images(message.embeds))


def is_private(channel: Any) -> bool:
    return getattr(channel, "type", None) in PRIVATE_TYPES


def is_thread(channel: Any) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


def replied_message(message: discord.Message) -> discord.Message | None:
    """The message this one replies to, as Discord sent it along (``referenced_message``)."""
    ref = message.reference
    resolved = ref.resolved if ref is not None else None
    return resolved if isinstance(resolved, discord.Message) else None


def sender_of(user: discord.abc.User, language: str | None) -> Sender:
    return Sender(str(user.id), user.display_name, user.name, language)


def message_to_incoming(message: discord.Message, bot_id: int) -> Incoming | None:
    """A person's message as the core's event; ``None`` when it cannot be for the bot (a
    bot's message, a join notice, a channel message neither addressed to us nor in a
    Discord thread)."""
    if message.author.bot or message.type not in PERSON_TYPES:
        return None
    private = is_private(message.channel)
    thread = is_thread(message.channel)
    replied = replied_message(message)
    to_bot = replied is not None and replied.author.id == bot_id
    mentioned = bot_id in message.raw_mentions
    if not (private or thread or mentioned or to_bot):
        return None
    addressed = private or mentioned or to_bot
    attachments = inputs_of(message)
    if not addressed and not message.content and not attachments:
        return None  # what a follow-up looks like without the message-content intent
    guild = message.guild
    reference = message.reference
    return Incoming(
        chat=ChatKey(PLATFORM, str(message.channel.id)),
        message_id=str(message.id),
        sender=sender_of(message.author, str(guild.preferred_locale) if guild else None),
        text=clean_text(message.content, bot_id),
        attachments=attachments,
        is_private=private,
        addressed=addressed,
        reply_to=str(reference.message_id) if reference and reference.message_id else None,
        reply_attachments=inputs_of(replied) if replied is not None else (),
        thread_hint=str(message.channel.id) if thread else None,
        command_prefix="/",
        platform_data={"guild": str(guild.id) if guild else "",
                       "reply_to": str(message.id)},
    )


def command_to_incoming(interaction: discord.Interaction, text: str,
                        files: Sequence[discord.Attachment], *, starts: bool) -> Incoming:
    """A slash command as the core's event. ``starts``: the command begins a conversation
    (``/edit``); any other, outside a DM or a Discord thread, cannot say which one it is
    about (like a Slack slash command)."""
    channel = interaction.channel
    private = interaction.guild_id is None or is_private(channel)
    thread = is_thread(channel)
    data = {"guild": str(interaction.guild_id or ""),
            "interaction": str(interaction.id), "token": interaction.token,
            "application": str(interaction.application_id)}
    if interaction.guild_id is not None:
        # what Discord computed for the member, sent with every interaction in a server
        data["permissions"] = str(interaction.permissions.value)
        data["permissions_of"] = str(interaction.user.id)
    return Incoming(
        chat=ChatKey(PLATFORM, str(interaction.channel_id)),
        message_id=f"interaction:{interaction.id}",
        sender=sender_of(interaction.user, str(interaction.locale)),
        text=text,
        attachments=tuple(attachment_of(a) for a in files),
        is_private=private,
        addressed=True,
        thread_hint=str(interaction.channel_id) if thread else None,
        thread_unknown=not (private or thread or starts),
        command_prefix="/",
        platform_data=data,
    )
