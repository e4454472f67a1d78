"""Commands that show things: /help, /usage, /stats."""

from __future__ import annotations

from bot.core.ports.stats import StoreStats
from bot.core.store import CallReport, UsageSummary
from bot.flow.commands.command_context import CommandContext
from bot.kit.formatting import dollars
from bot.kit.i18n import _, ngettext
from bot.models.key_pool import KeyPool
from bot.policy.budgets import day_start, month_start


async def help_(ctx: CommandContext) -> None:
    await ctx.say(ctx.help_text(ctx.event.platform, ctx.prefix))


def _calls(u: UsageSummary) -> str:
    calls = ngettext("{count} model call", "{count} model calls", u.calls).format(
        count=u.calls)
    if u.failed:
        calls += " " + _("({count} failed)").format(count=u.failed)
    return calls


async def usage(ctx: CommandContext) -> None:
    event = ctx.event
    store = ctx.store
    now = ctx.turns.clock()
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
    failures = ", ".join(f"{kind.value if kind else 'unknown'} {count}"
                         for kind, count in report.failures.items())
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
    """Operators only: the router enforces the spec's ``admin_only``."""
    now = ctx.turns.clock()
    figures = await ctx.store.stats()
    lines = [_("Model: {model}").format(model=ctx.turns.model.name)]
    lines += _report(_("Today (UTC)"), await ctx.store.call_report(since=day_start(now)))
    lines += _report(_("This month"), await ctx.store.call_report(since=month_start(now)))
    lines += _store_lines(figures)
    lines += _key_lines(getattr(ctx.turns.model, "key_pool", None))
    await ctx.say("\n".join(lines))


def _key_lines(pool: KeyPool | None) -> list[str]:
    """Calls and failures per key of the model's pool since start-up, keys masked."""
    if pool is None:
        return []
    lines = [_("API keys since the bot started:")]
    for key in pool.report():
        line = "• " + _("{key}: {calls}, {failed} failed").format(
            key=key.label, calls=ngettext("{count} call", "{count} calls", key.calls).format(
                count=key.calls), failed=key.failures)
        if key.taken_out:
            line += " — " + _("taken out: the service refused it")
        elif key.resting:
            line += " — " + _("resting: its quota is spent")
        lines.append(line)
    return lines


def _store_lines(figures: StoreStats) -> list[str]:
    """The store's figures, one ``label: count`` line each."""
    shown = (
        (_("threads"), figures.threads),
        (_("turns"), figures.turns),
        (_("versions"), figures.versions),
        (_("failed turns"), figures.failed_turns),
        (_("undelivered answers"), figures.undelivered_answers),
        (_("stored images"), figures.stored_images),
        (_("image bytes"), figures.image_bytes),
        (_("users"), figures.users),
        (_("model calls"), figures.model_calls),
        (_("failed calls"), figures.failed_calls),
        (_("messages in the inbox"), figures.inbox_backlog),
    )
    return [f"{label}: {value:,}" for label, value in shown]
