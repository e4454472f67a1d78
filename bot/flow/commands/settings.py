"""/settings: a chat's choices shown to anyone, changed by the chat's admins.

``/settings`` lists them; ``/settings <name> <value>`` changes one (``aspect 16:9``,
``language zh``, ``daily 2.50``…), ``/settings <name> default`` puts back the bot's
default. What is typed is checked by :func:`bot.policy.chat_settings.parse`.
"""

from __future__ import annotations

from bot.core.chat_settings import ChatSettings
from bot.flow.commands.command_context import CommandContext
from bot.flow.ignored_settings import came_back
from bot.kit.formatting import dollars
from bot.kit.i18n import N_, _
from bot.models.options import AUTO, aspect_ratios, image_sizes
from bot.policy.budgets import day_start, month_start
from bot.policy.chat_settings import (
    NAMES,
    SettingError,
    canonical_name,
    operator_limits,
    parse,
)

ONLY_ADMINS = N_("Only this chat's admins can change its settings.")


async def settings(ctx: CommandContext) -> None:
    words = ctx.command.args.split(maxsplit=1)
    if not words:
        await ctx.say(await _overview(ctx))
        return
    name = canonical_name(words[0])
    if name is None:
        raise SettingError(_("There is no setting called “{name}”. The settings are: "
                             "{names}.").format(name=words[0], names=", ".join(NAMES)))
    if len(words) < 2:
        raise SettingError(_("Give a value too, like {example}.").format(
            example=f"{ctx.prefix}settings {name} {_example(name)}"))
    await ctx.require_admin(_(ONLY_ADMINS))
    choices = ctx.choices
    chosen = await choices.chat_settings(ctx.event.chat)
    value = parse(name, words[1], model=chosen.model, models=choices.model_names(),
                  allowed_model=choices.allowed_model, operator=operator_limits(ctx.settings),
                  by_operator=ctx.turns.admins.is_operator(ctx.event))
    await ctx.store.set_chat_setting(ctx.event.chat, name, value,
                                     changed_by=ctx.event.sender.qualified(ctx.event.platform))
    after = await choices.chat_settings(ctx.event.chat)
    if value is None:
        message = _("Done: {name} is back to the bot's default ({value}).")
    else:
        message = _("Done: {name} is now {value}.")
    lines = [message.format(name=name, value=_shown(name, after))]
    if name == "model":
        if chosen.aspect_ratio != after.aspect_ratio:
            lines.append(_("{model} can't draw {ratio}, so the aspect ratio is back to the "
                           "default.").format(model=after.model, ratio=chosen.aspect_ratio))
        if chosen.image_size != after.image_size:
            lines.append(_("{model} has no size {size}, so the image size is back to the "
                           "default.").format(model=after.model, size=chosen.image_size))
    await ctx.say("\n".join(lines))


def _example(name: str) -> str:
    return {"model": "gemini-3-pro-image-preview", "aspect": "16:9", "size": "2K",
            "language": "zh", "per_minute": "5", "credentials_prompt": "on",
            "send_originals": "on", "blocked_terms": "word, other words"}.get(name, "2.50")


def _limit(micros: int | None) -> str:
    return dollars(micros) if micros is not None else _("no limit")


def _shown(name: str, s: ChatSettings) -> str:
    """A setting's current value as /settings shows it."""
    limits = s.limits
    if name == "model":
        return s.model
    if name == "aspect":
        if s.aspect_ratio == AUTO:
            return _("auto (the shape of the picture being edited)")
        return s.aspect_ratio or _("the model's default")
    if name == "size":
        if not image_sizes(s.model):
            return _("fixed by the model")
        return s.image_size or _("the model's default")
    if name == "language":
        return {None: _("each person's own"), "en": "English", "zh_Hans": "简体中文"}.get(
            s.language, s.language or "")
    if name == "per_minute":
        if limits.user_per_minute is None:
            return _("no limit")
        return _("{count} a minute").format(count=limits.user_per_minute)
    if name in ("credentials_prompt", "send_originals"):
        return _("on") if getattr(s, name) else _("off")
    if name == "blocked_terms":
        return ", ".join(s.blocked_terms) if s.blocked_terms else _("none")
    return _limit({"daily": limits.chat_daily, "monthly": limits.chat_monthly,
                   "user_daily": limits.user_daily,
                   "user_monthly": limits.user_monthly}[name])


_LABELS = {
    "model": N_("Model"),
    "aspect": N_("Aspect ratio"),
    "size": N_("Image size"),
    "language": N_("Language"),
    "daily": N_("Daily budget of the chat"),
    "monthly": N_("Monthly budget of the chat"),
    "user_daily": N_("Daily budget per person"),
    "user_monthly": N_("Monthly budget per person"),
    "per_minute": N_("Requests per person"),
    "credentials_prompt": N_("Prompt in Content Credentials"),
    "send_originals": N_("Send pictures as files"),
    "blocked_terms": N_("Blocked words"),
}


def _ignored(name: str, s: ChatSettings, stored: dict[str, str], ctx: CommandContext) -> str:
    """What the service did instead of the chat's size or aspect ratio, if it ignored it."""
    if name == "size":
        return came_back(stored, "size", s.image_size or ctx.settings.gemini_image_size)
    if name == "aspect":
        return came_back(stored, "aspect", s.aspect_ratio or ctx.settings.gemini_aspect_ratio)
    return ""


async def _overview(ctx: CommandContext) -> str:
    choices = ctx.choices
    chat = ctx.event.chat
    s = await choices.chat_settings(chat)
    now = ctx.turns.clock()
    today = await ctx.store.usage(platform=chat.platform, chat_id=chat.chat_id,
                                  since=day_start(now))
    month = await ctx.store.usage(platform=chat.platform, chat_id=chat.chat_id,
                                  since=month_start(now))
    stored = await ctx.store.chat_settings(chat)
    lines = [_("Settings of this chat:")]
    for name in NAMES:
        line = f"• {_(_LABELS[name])} ({name}): {_shown(name, s)}"
        if name == "model" and len(choices.model_names()) > 1:
            line += " — " + _("choices: {choices}").format(
                choices=", ".join(choices.model_names()))
        elif name == "aspect":
            line += " — " + _("choices: {choices}").format(
                choices=", ".join((AUTO, *aspect_ratios(s.model))))
        elif name == "size" and image_sizes(s.model):
            line += " — " + _("choices: {choices}").format(
                choices=", ".join(image_sizes(s.model)))
        elif name == "daily":
            line += " — " + _("spent today: {amount}").format(amount=dollars(today.cost_micros))
        elif name == "monthly":
            line += " — " + _("spent this month: {amount}").format(
                amount=dollars(month.cost_micros))
        lines.append(line + _ignored(name, s, stored, ctx))
    p = ctx.prefix
    lines += ["", _("Chat admins change them: {examples}. “default” puts back the bot's "
                    "default. Budgets are in US dollars, per UTC day and calendar month; "
                    "a chat can set lower limits than the bot's, not higher ones.").format(
        examples=", ".join(f"{p}settings {example}" for example in
                           ("aspect 16:9", "language zh", "daily 2.50")))]
    return "\n".join(lines)
