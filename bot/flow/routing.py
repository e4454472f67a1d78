"""Which thread a message belongs to and which turn it continues (DESIGN.md, "Threads
and turns"): a reply continues the replied-to turn, a platform thread its conversation,
a private chat its current thread, and a message addressed to the bot in a group starts
a new one."""

from __future__ import annotations

from bot.core.store import Store
from bot.core.threads import Thread, TurnStatus
from bot.core.work import Target, Work


async def route(store: Store, work: Work) -> Target | None:
    """Where ``work`` goes; ``None`` when it turns out not to be meant for the bot."""
    incoming = work.event
    if incoming.reply_to:
        target = await _reply_target(store, work)
        if target is not None:
            return target
    if incoming.thread_hint:
        thread = await store.thread_by_key(incoming.chat, incoming.thread_hint)
        if thread is None:
            if not incoming.addressed and not incoming.is_private:
                return None  # the message that was to start it was refused
            thread = await start_thread(store, work, external_key=incoming.thread_hint)
            if incoming.reply_attachments and not incoming.attachments:
                return Target(thread, None, follow_head=False,
                              carried=incoming.reply_attachments)
        return Target(thread, thread.head_id, follow_head=True)
    if incoming.is_private:
        thread = await store.current_thread(incoming.chat)
        if thread is None:
            thread = await start_thread(store, work)
        return Target(thread, thread.head_id, follow_head=True)
    if not incoming.addressed:
        return None
    return Target(await start_thread(store, work), None, follow_head=False)


async def _reply_target(store: Store, work: Work) -> Target | None:
    """A reply to one of the bot's messages continues that turn (a failed turn is tried
    again from its parent); a reply to anyone's picture starts a thread with it."""
    incoming = work.event
    assert incoming.reply_to is not None
    linked = await store.linked_turn(incoming.chat, incoming.reply_to)
    if linked is not None:
        thread = await store.get_thread(linked.thread_id)
        if thread is not None:
            if linked.status is TurnStatus.FAILED:
                return Target(thread, linked.parent_id, follow_head=False, linked=linked)
            return Target(thread, linked.id, follow_head=False, linked=linked)
    if incoming.reply_attachments:
        thread = await start_thread(store, work)
        return Target(thread, None, follow_head=False, carried=incoming.reply_attachments)
    return None


async def start_thread(store: Store, work: Work, external_key: str | None = None) -> Thread:
    """A new conversation in the event's lane; in a private chat it becomes the current
    one."""
    incoming = work.event
    thread = await store.create_thread(
        incoming.chat, lane=work.entry.lane, external_key=external_key,
        created_by=incoming.sender.id,
    )
    if incoming.is_private:
        await store.set_current_thread(incoming.chat, thread.id)
    return thread
