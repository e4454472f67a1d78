"""Delivery, its own step: a stored answer goes out with retries, and only a delivered
answer becomes the thread's current version.

A model answer is stored the moment it arrives (:mod:`bot.flow.turns`); sending it is
this module's business: reading its pictures back and signing them once a delivery place
is free (:data:`DELIVERIES_IN_HAND`, handed out fairly between chats by
:class:`bot.flow.pacing.ChatPacer`: a send waits on its own chat's platform limit before
it takes one), sending with backoff, marking it delivered, and,
when the chat cannot be reached, saying the picture is ready and will follow. What could
not be sent is sent again with the next message of the conversation or with /resend,
from the stored picture, without a new model call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

import bot.kit.images as imaging
from bot.core.config import Settings
from bot.core.events import Channel, ChatKey, Progress
from bot.core.platforms import platform_info
from bot.core.store import Store
from bot.core.threads import Turn
from bot.core.work import Work
from bot.flow.choices import ChatChoices
from bot.flow.pacing import ChatPacer
from bot.kit import metrics
from bot.kit.i18n import N_, _
from bot.kit.image_types import OutputImage
from bot.provenance.outgoing import Provenance

log = logging.getLogger(__name__)

PICTURE_NOT_STORED = N_("(Its picture is no longer stored: old pictures are removed after a "
                        "while.)")
NOT_DELIVERED = N_("Your picture ({label}) is ready, but I couldn't send it here. I'll send "
                   "it again with your next message in this conversation, or use {resend}.")

#: deliveries whose pictures are read, signed and on their way at once. Telegram lets a
#: bot send about 30 messages a second, so a burst of finished answers queues for it; they
#: wait stored and hold no pictures (before this bound, 500 held 1.4 GB). 24 uploads of
#: half a second each still fill those 30 a second.
DELIVERIES_IN_HAND = 24


class Delivery:
    """Sends stored answers (see the module docstring). One per process."""

    def __init__(self, store: Store, settings: Settings, choices: ChatChoices,
                 provenance: Provenance) -> None:
        self.store = store
        self.settings = settings
        self.choices = choices
        #: signs what goes out (Content Credentials); stored turns stay as the model sent them
        self.provenance = provenance
        #: deliveries holding their pictures, at most (see DELIVERIES_IN_HAND), shared
        #: fairly between chats
        self.pacer = ChatPacer(DELIVERIES_IN_HAND)

    @asynccontextmanager
    async def in_hand(self, chat: ChatKey, *, messages: int = 1) -> AsyncIterator[None]:
        """A delivery place for a send of ``messages`` to ``chat``, taken once that chat
        may send (its platform's per-chat pace): a chat's backlog waits on itself."""
        pace = platform_info(chat.platform).send_pace
        async with self.pacer.place((chat.platform, chat.chat_id),
                                    pace(chat) if pace is not None else None,
                                    cost=max(1, messages)):
            yield

    async def deliver(self, work: Work, turn: Turn, caption: str, *,
                      done_event: int | None) -> bool:
        """Send a stored answer, retrying with backoff; only a delivered answer becomes
        the thread's current version. ``False`` when it could not be sent (it stays
        stored). Its pictures are read and signed once a delivery slot is free."""
        chosen = await self.choices.settings_for(work)
        failure: Exception | None = None
        async with self.in_hand(work.event.chat, messages=len(turn.images)):
            outputs = await self.stored_outputs(turn)
            out = await self.provenance.outgoing(turn, outputs, chosen)
            try:
                ids = await self.send_with_retries(work.channel, out.images, caption,
                                                   as_files=out.as_files)
            except Exception as exc:
                failure = exc
        if failure is not None:
            await self._not_delivered(work, turn, failure)
            return False
        await self.store.mark_delivered(turn, chat=work.event.chat, message_ids=ids,
                                        move_head=True, done_event=done_event)
        metrics.IMAGES_OUT.labels(work.event.platform).inc(len(outputs))
        await safe_progress(work.channel, Progress.DONE)
        return True

    async def _not_delivered(self, work: Work, turn: Turn, failure: Exception) -> None:
        """The answer stays stored: say it is ready and how it will still come."""
        log.warning("could not deliver v%s of thread %s: %s: %s", turn.version,
                    turn.thread_id, type(failure).__name__, str(failure)[:200])
        metrics.UNDELIVERED.labels(work.event.platform).inc()
        await safe_progress(work.channel, Progress.FAILED)
        label = f"v{turn.version}" if turn.version else "…"
        resend = f"{work.event.command_prefix}resend"
        await self.tell_about(work, turn, _(NOT_DELIVERED).format(label=label, resend=resend))

    async def deliver_pending(self, work: Work, thread_id: int) -> bool:
        """Pictures of this thread that could not be sent earlier; ``True`` if any."""
        pending = await self.store.undelivered(thread_id)
        for turn in pending:
            await self.deliver(work, turn, caption_for(turn), done_event=None)
        return bool(pending)

    async def stored_outputs(self, turn: Turn) -> list[OutputImage]:
        """A stored turn's pictures ready to send again: checked once when they arrived,
        so only their headers are read now (a PNG or JPEG needs no decode)."""
        outputs = []
        for ref in turn.images:
            data = await self.store.image_bytes(ref.sha256)
            if ref.mime_type in ("image/png", "image/jpeg"):
                outputs.append(imaging.inspect_stored_output(data, ref.mime_type))
            else:
                outputs.append(await imaging.inspect_output_async(data, ref.mime_type))
        return outputs

    async def send_with_retries(self, channel: Channel, outputs: Sequence[OutputImage],
                                caption: str, *, as_files: bool = False) -> list[str]:
        """Send pictures (or the caption alone) with backoff; raises what the last
        attempt raised. ``as_files``: byte for byte (see Channel.send_images)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.chatbrush_delivery_attempts),
            wait=wait_exponential(multiplier=self.settings.chatbrush_delivery_backoff,
                                  max=60),
            reraise=True,
        )
        ids: list[str] = []
        async for attempt in retrying:
            with attempt:
                ids = (await channel.send_images(outputs, caption, as_files=as_files)
                       if outputs else await channel.send_text(caption))
        return ids

    async def send_linked(self, work: Work, turn: Turn, caption: str) -> None:
        """Show a stored turn's pictures again, linked to it (replies continue from it)."""
        try:
            if await self.store.missing_images([ref.sha256 for ref in turn.images]):
                ids = await work.channel.send_text(f"{caption} {_(PICTURE_NOT_STORED)}")
            else:
                out = await self.provenance.outgoing(turn, await self.stored_outputs(turn),
                                                     await self.choices.settings_for(work))
                ids = await work.channel.send_images(out.images, caption,
                                                     as_files=out.as_files)
        except Exception:
            log.exception("could not send a stored picture")
            return
        for message_id in ids:
            await self.store.link_message(work.event.chat, message_id, turn)

    async def tell_about(self, work: Work, turn: Turn, text: str) -> None:
        """Send ``text`` linked to ``turn``: a reply to it ("try again") finds the turn."""
        for message_id in await safe_send(work.channel, text):
            await self.store.link_message(work.event.chat, message_id, turn)


async def safe_send(channel: Channel, text: str) -> list[str]:
    """A reply that must not fail the turn: logged when it cannot be sent."""
    try:
        return await channel.send_text(text)
    except Exception:
        log.exception("could not send a reply")
        return []


async def safe_progress(channel: Channel, state: Progress) -> None:
    """The typing/progress signal: cosmetic, never raises."""
    try:
        await channel.progress(state)
    except Exception:
        log.warning("progress signal %s failed", state.value, exc_info=True)


def caption_for(turn: Turn) -> str:
    """``v3 — what the model said``: the same words when an answer is sent again."""
    return f"v{turn.version}" + (f" — {turn.text}" if turn.text else "")
