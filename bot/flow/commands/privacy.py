"""Commands about a person's record: /export (who made this, from what) and /forget.

``/forget`` asks first: it explains what it would remove, with counts, and acts only on
``/forget confirm``. Nothing can be restored afterwards, and Telegram clients send a
command from their suggestion list at one tap, so a bare ``/forget`` must never be the
deed. The confirmation is a word, not a pending state: it survives restarts, works the
same in every platform and in scripts, and needs nothing stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from bot.core.errors import UserFacingError
from bot.core.events import Progress
from bot.core.store import AuthoredSummary, Store
from bot.core.threads import Thread, Turn
from bot.flow.commands.command_context import CommandContext
from bot.history.export import ExportTooLarge, ThreadExport, export_thread
from bot.kit.formatting import readable_size, usd
from bot.kit.i18n import _, ngettext

log = logging.getLogger(__name__)

CONFIRM = "confirm"


# ---------------------------------------------------------------------- /export
async def export(ctx: CommandContext) -> None:
    thread = await ctx.thread()
    chat = ctx.event.chat
    if (thread.chat.platform, thread.chat.chat_id) != (chat.platform, chat.chat_id):
        raise UserFacingError(_("That conversation belongs to another chat."))
    limit = min(ctx.settings.chatbrush_export_max_bytes, ctx.channel.max_file_bytes)
    await ctx.progress(Progress.WORKING)
    try:
        turns = await ctx.store.turns_of(thread.id)
        result = await build_export(ctx.store, thread, turns, max_bytes=limit,
                                    costs=await export_costs(ctx.store, thread))
    except ExportTooLarge as exc:
        await ctx.progress(Progress.FAILED)
        raise UserFacingError(_(
            "This conversation is too big to export: it comes to about {size}, and I can "
            "send files of at most {limit} here."
        ).format(size=readable_size(exc.size), limit=readable_size(exc.limit))) from None
    caption = _("Conversation {id} as a zip: open index.html inside it in any browser, even "
                "offline. provenance.json has the same for programs.").format(id=thread.id)
    if result.missing_images:
        caption += " " + ngettext(
            "{count} picture was removed earlier and is listed without its file.",
            "{count} pictures were removed earlier and are listed without their files.",
            len(result.missing_images),
        ).format(count=len(result.missing_images))
    await ctx.channel.send_file(result.data, result.filename, caption)
    await ctx.progress(Progress.DONE)
    log.info("export: thread %s (%d bytes) for user %s in %s", thread.id, len(result.data),
             ctx.event.sender.id, chat)


async def build_export(store: Store, thread: Thread, turns: list[Turn], *, max_bytes: int,
                       costs: Mapping[int, float] | None) -> ThreadExport:
    """:func:`bot.history.export.export_thread` in a worker thread (thumbnails and compression take
    a while), loading each picture from the store only when the zip needs it."""
    loop = asyncio.get_running_loop()

    def load_image(sha256: str) -> bytes:
        # runs in the worker: ask the loop for the bytes and wait (KeyError when removed)
        return asyncio.run_coroutine_threadsafe(store.image_bytes(sha256), loop).result()

    regions = await store.turn_regions([turn.id for turn in turns])
    return await asyncio.to_thread(export_thread, thread, list(turns), load_image,
                                   costs=costs, max_bytes=max_bytes, regions=regions)


async def export_costs(store: Store, thread: Thread) -> Mapping[int, float]:
    """USD per model turn of ``thread``, from the usage records of the calls that made
    them (a turn stored before calls were linked to their turns has no cost shown)."""
    return {turn_id: usd(micros)
            for turn_id, micros in (await store.turn_costs(thread.id)).items()}


# ---------------------------------------------------------------------- /forget
async def forget(ctx: CommandContext) -> None:
    event = ctx.event
    args = ctx.command.args.strip().lower()
    confirm = f"{ctx.prefix}forget {CONFIRM}"
    if args not in ("", CONFIRM):
        raise UserFacingError(_("Send {forget} to see what it would remove, then {confirm} "
                                "to remove it.").format(forget=f"{ctx.prefix}forget",
                                                        confirm=confirm))
    # In a private chat a person speaks for themselves everywhere; in a group, for there.
    everywhere = event.is_private
    chat_id = None if everywhere else event.chat.chat_id
    where = _("in every chat with me") if everywhere else _("in this chat")
    summary = await ctx.store.authored_summary(event.platform, event.sender.id,
                                               chat_id=chat_id)
    if summary == AuthoredSummary():
        await ctx.say(_("I have nothing you sent {where}.").format(where=where))
        return
    counts = _counts(summary)
    if args != CONFIRM:
        await ctx.say(_(
            "This removes what you sent {where}: {counts}. The conversations stay, with "
            "your messages shown as “removed at the author's request”; my answers and the "
            "pictures I made stay too. It cannot be undone. To go ahead, send {confirm}"
        ).format(where=where, counts=counts, confirm=confirm))
        return
    # the entries of this very message are scrubbed too: they finish only after this
    report = await ctx.store.forget_author(event.platform, event.sender.id, chat_id=chat_id,
                                           handling=ctx.work.entry_ids)
    log.info("forget: user %s in %s removed %d turns, %d pictures erased, %d inbox records "
             "emptied (%s)", event.sender.id, event.chat, report.turns, report.images_erased,
             report.events_scrubbed, "every chat" if everywhere else "this chat")
    await ctx.say(_("Done: I removed {counts} {where}.").format(counts=counts, where=where))


def _counts(summary: AuthoredSummary) -> str:
    prompts = ngettext("{count} message", "{count} messages", summary.prompts)
    pictures = ngettext("{count} picture", "{count} pictures", summary.images)
    return _("{prompts} and {pictures}").format(
        prompts=prompts.format(count=summary.prompts),
        pictures=pictures.format(count=summary.images))
