"""Commands that show things: /help, /usage, /stats."""

from __future__ import annotations

from bot.core.errors import UserFacingError
from bot.core.store import CallReport, UsageSummary
from bot.flow.commands.command_context import CommandContext
from bot.kit.formatting import dollars
from bot.kit.i18n import _, ngettext
from bot.policy.budgets import day_start, month_start


async def help_(ctx: CommandContext) -> None:
    await ctx.say(ctx.engine.help_text(ctx.event.platform, ctx.prefix))


def _calls(u: UsageSummary) -> str:
    calls = ngettext("{count} model call", "{count} model calls", u.calls).format(
        count=u.calls)
    if u.failed:
        calls += " " + _("({count} failed)").format(count=u.failed)
    return calls


async def usage(ctx: CommandContext) -> None:
    event = ctx.event
    store = ctx.store
    now = ctx.engine.clock()
    periods = ((_("Today"), day_start(now)), (_("This month"), month_start(now)))
    lines: list[str] = []
    for label, since in periods:
        mine = await store.usage(platform=event.platform, chat_id=event.chat.chat_id,
                                 user_id=event.sender.id, since=since)
        everyone = await store.usage(platform=event.platform, chat_id=event.chat.chat_id,
                                     since=since)
        lines += [
            f"{label} (UTC):",
            "• " + _("you, in this chat: {cost}, {calls}, {images}").format(
                cost=dollars(mine.cost_micros), calls=_calls(mine),
                images=ngettext("{count} image", "{count} images", mine.images).format(
                    count=mine.images)),
            "• " + _("this chat: {cost}, {calls}, {images}").format(
                cost=dollars(everyone.cost_micros), calls=_calls(everyone),
                images=ngettext("{count} image", "{count} images", everyone.images).format(
                    count=everyone.images)),
        ]
    total = await store.usage(platform=event.platform, chat_id=event.chat.chat_id,
                              user_id=event.sender.id)
    lines.append(_("All time, you in this chat: {calls}, {tokens} tokens ({tokens_in} in, "
                   "{tokens_out} out).").format(
        calls=_calls(total), tokens=f"{total.prompt_tokens + total.output_tokens:,}",
        tokens_in=f"{total.prompt_tokens:,}", tokens_out=f"{total.output_tokens:,}"))
    await ctx.say("\n".join(lines))


def _report(label: str, report: CallReport) -> list[str]:
    failures = ", ".join(f"{kind} {count}" for kind, count in report.failures.items())
    lines = [f"{label}: " + _("{calls}, {cost}").format(
        calls=ngettext("{count} call", "{count} calls", report.calls).format(
            count=report.calls),
        cost=dollars(report.cost_micros))]
    lines.append("• " + _("failed: {failures}").format(failures=failures or _("none")))
    if report.latency_p50_ms is not None and report.latency_p95_ms is not None:
        lines.append("• " + _("model latency: p50 {p50:.1f} s, p95 {p95:.1f} s").format(
            p50=report.latency_p50_ms / 1000, p95=report.latency_p95_ms / 1000))
    for chat in report.busiest:
        lines.append("• " + _("{chat}: {calls}, {cost}").format(
            chat=f"{chat.platform}:{chat.chat_id}",
            calls=ngettext("{count} call", "{count} calls", chat.calls).format(
                count=chat.calls),
            cost=dollars(chat.cost_micros)))
    return lines


async def stats(ctx: CommandContext) -> None:
    if not ctx.engine.admins.is_operator(ctx.event):
        raise UserFacingError(_("Sorry, that command is for the bot's operators."))
    now = ctx.engine.clock()
    figures = await ctx.store.stats()
    lines = [_("Model: {model}").format(model=ctx.engine.model.name)]
    lines += _report(_("Today (UTC)"), await ctx.store.call_report(since=day_start(now)))
    lines += _report(_("This month"), await ctx.store.call_report(since=month_start(now)))
    lines += [f"{k}: {v:,}" for k, v in figures.items()]
    await ctx.say("\n".join(lines))
