"""Commands that act on one conversation: /new, /each, /undo, /history, /resend,
/original, /reset."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from bot.core.errors import UserFacingError
from bot.core.threads import Turn, TurnStatus, format_history, undo_target
from bot.flow.commands.command_context import CommandContext
from bot.flow.each_turns import parse_each, run_linked
from bot.history.contact_sheet import ContactSheet, render_contact_sheet
from bot.history.version_tree import is_version
from bot.kit.i18n import _, ngettext
from bot.kit.image_types import OutputImage

if TYPE_CHECKING:
    from bot.core.store import Store

log = logging.getLogger(__name__)

MAX_UNDO = 50
#: a longer version list goes as its own message (Telegram's caption limit, the shortest)
SHEET_CAPTION_LIMIT: Final = 1024


async def new(ctx: CommandContext) -> None:
    if not ctx.event.is_private or ctx.event.thread_hint:
        raise UserFacingError(_(
            "Here every message that mentions me starts a fresh conversation; reply to one "
            "of my images to keep editing it."
        ))
    await ctx.turns.new_thread(ctx.work)
    await ctx.say(_("Started a fresh conversation. Send a photo or describe a picture."))


async def each(ctx: CommandContext) -> None:
    """The same edit on each picture (the instruction was screened by the middleware)."""
    await run_linked(ctx.turns, ctx.work, parse_each(ctx.command.args))


async def undo(ctx: CommandContext) -> None:
    args = ctx.command.args
    arg = args.split()[0] if args else "1"
    if not arg.isdigit() or not 1 <= int(arg) <= MAX_UNDO:
        undo = f"{ctx.prefix}undo"
        raise UserFacingError(_("Use {undo} or {undo} N with N from 1 to {most}.").format(
            undo=undo, most=MAX_UNDO))
    thread = await ctx.thread()
    path = [t for t in await ctx.store.path(thread.head_id) if t.status is TurnStatus.OK]
    target, steps = undo_target(path, int(arg))
    if steps == 0:
        raise UserFacingError(_("Nothing to undo yet."))
    # The head moves and the event is finished in one commit: a resumed /undo can never
    # go back twice.
    await ctx.store.set_head(thread.id, target.id if target else None,
                             done_event=ctx.work.entry.id)
    undone = ngettext("Undid {count} version.", "Undid {count} versions.", steps).format(
        count=steps)
    if target is None:
        await ctx.say(f"{undone} "
                      + _("Back to the start: send a photo or a prompt to begin again."))
        return
    label = (_("Back to v{version}.").format(version=target.version) if target.is_model
             else _("Back to the original."))
    if not target.images:
        await ctx.say(f"{undone} {label}")
        return
    await ctx.delivery.send_linked(ctx.work, target,
                                 f"{undone} {label} " + _("Reply to continue from here."))


async def history(ctx: CommandContext) -> None:
    """The versions as a contact sheet (a thumbnail each, the tree drawn, the current one
    marked) with the text list as its caption, or after it when the list is long; the
    text alone while there is no version."""
    thread = await ctx.thread()
    turns = await ctx.store.turns_of(thread.id)
    removed = await ctx.store.missing_images(
        {ref.sha256 for t in turns if t.is_model for ref in t.images})
    text = format_history(turns, thread.head_id, removed=removed)
    sheet = await contact_sheet_of(ctx.store, turns, thread.head_id)
    if sheet is None:
        await ctx.say(text)
        return
    picture = OutputImage(sheet.png, "image/png", sheet.width, sheet.height)
    fits = len(text) <= SHEET_CAPTION_LIMIT
    try:
        ids = await ctx.channel.send_images([picture], text if fits else None)
    except Exception:
        log.exception("could not send the contact sheet")
        await ctx.say(text)
        return
    if not fits:
        ids += await ctx.say(text)
    head = await ctx.store.get_turn(thread.head_id) if thread.head_id else None
    if head is not None:  # a reply to the sheet continues from the current version
        for message_id in ids:
            await ctx.store.link_message(ctx.event.chat, message_id, head)


async def contact_sheet_of(store: Store, turns: Sequence[Turn], head_id: int | None
                           ) -> ContactSheet | None:
    """Render the sheet off the event loop; the pictures are read from the store one at a
    time as their tiles are drawn (a long thread's pictures never all sit in memory).
    ``None`` without versions, or when it could not be drawn (the text still goes)."""
    if not any(is_version(turn) for turn in turns):
        return None
    loop = asyncio.get_running_loop()

    def load(sha256: str) -> bytes:
        return asyncio.run_coroutine_threadsafe(store.image_bytes(sha256), loop).result(60)

    regions = await regions_by_version(store, turns)
    try:
        return await asyncio.to_thread(render_contact_sheet, turns, head_id, load,
                                       origin_label=_("original"), regions=regions)
    except Exception:
        log.exception("could not draw the contact sheet")
        return None


async def regions_by_version(store: Store, turns: Sequence[Turn]) -> dict[int, bytes]:
    """The masks of the versions made by region edits, by version number."""
    versions = {t.id: t.version for t in turns if is_version(t) and t.version is not None}
    found = await store.turn_regions(list(versions))
    return {versions[turn_id]: kept.mask_png for turn_id, kept in found.items()}


async def resend(ctx: CommandContext) -> None:
    """Pictures that could not be delivered go out now; with none, the current one again."""
    thread = await ctx.thread()
    if await ctx.delivery.deliver_pending(ctx.work, thread.id):
        return
    head = await ctx.store.get_turn(thread.head_id) if thread.head_id else None
    if head is None or not head.images:
        raise UserFacingError(_("There is no picture to send again in this conversation."))
    sent = (_("v{version}, sent again.").format(version=head.version) if head.is_model
            else _("The original, sent again."))
    await ctx.delivery.send_linked(ctx.work, head, f"{sent} " + _("Reply to continue from here."))


async def original(ctx: CommandContext) -> None:
    """The model's whole picture of a region edit (the replied-to version, else the
    current one), as a file: sometimes it is what the person wanted after all."""
    thread = await ctx.thread()
    turn = None
    if ctx.event.reply_to:
        turn = await ctx.store.linked_turn(ctx.event.chat, ctx.event.reply_to)
    if turn is None or not turn.is_model:
        turn = await ctx.store.get_turn(thread.head_id) if thread.head_id else None
    if turn is None or not turn.is_model:
        raise UserFacingError(_("There is no version in this conversation yet."))
    kept = (await ctx.store.turn_regions([turn.id])).get(turn.id)
    if kept is None or kept.image is None:
        raise UserFacingError(_(
            "v{version} is the model's whole picture already: only an edit of a marked area "
            "keeps another one.").format(version=turn.version))
    data = await ctx.store.image_bytes(kept.image.sha256)
    extension = "jpg" if kept.image.mime_type == "image/jpeg" else "png"
    await ctx.channel.send_file(data, f"v{turn.version}-whole.{extension}", _(
        "v{version} as the model drew it, before only the marked area was kept."
    ).format(version=turn.version))


async def reset(ctx: CommandContext) -> None:
    await ctx.require_admin(_("Sorry, only chat admins can reset a conversation here."))
    thread = await ctx.thread()
    await ctx.store.delete_thread(thread.id)
    await ctx.say(_("Done: I forgot that conversation. Send a photo to start again."))
