"""Commands that show things: /help, /usage, /stats, /settings."""

from __future__ import annotations

from bot.commands.context import CommandContext
from bot.errors import UserFacingError
from bot.store import UsageSummary


async def help_(ctx: CommandContext) -> None:
    await ctx.say(ctx.engine.help_text(ctx.prefix))


async def usage(ctx: CommandContext) -> None:
    event = ctx.event
    mine = await ctx.store.usage(platform=event.platform, chat_id=event.chat.chat_id,
                                 user_id=event.sender.id)
    chat = await ctx.store.usage(platform=event.platform, chat_id=event.chat.chat_id)

    def line(who: str, u: UsageSummary) -> str:
        return (f"{who}: {u.calls} model calls ({u.failed} failed), {u.images} images, "
                f"{u.prompt_tokens + u.output_tokens:,} tokens "
                f"({u.prompt_tokens:,} in, {u.output_tokens:,} out)")

    await ctx.say(f"{line('You, in this chat', mine)}\n{line('This chat', chat)}")


async def stats(ctx: CommandContext) -> None:
    if not ctx.engine.admins.is_operator(ctx.event):
        raise UserFacingError("Sorry, that command is for the bot's operators.")
    figures = await ctx.store.stats()
    lines = [f"Model: {ctx.engine.model.name}"] + [f"{k}: {v:,}" for k, v in figures.items()]
    await ctx.say("\n".join(lines))


async def settings(ctx: CommandContext) -> None:
    await ctx.require_admin("Sorry, that command is for admins.")
    s = ctx.settings
    model = ctx.engine.model
    lines = [
        f"Model: {model.name} (up to {model.max_input_images} input images)",
        f"Image size: {s.gemini_image_size or 'model default'}; aspect ratio: "
        f"{s.gemini_aspect_ratio or 'model default'}",
        f"Inputs downscaled to {s.chatbrush_max_side}px; request budget "
        f"{s.chatbrush_context_bytes / 1e6:.1f} MB",
        f"Prompt limit: {s.chatbrush_max_prompt_chars:,} characters; upload limit "
        f"{s.chatbrush_max_upload_bytes / 1e6:.0f} MB",
    ]
    await ctx.say("\n".join(lines))
