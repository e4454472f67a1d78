"""The turn service: route → context → model → record, then delivery.

The router (:mod:`bot.flow.router`) hands it one event that is an edit (or a resumed
one). It works out which thread and which turn the message continues, stores the user's
turn, calls the model, stores the answer as soon as it arrives, and hands it to delivery
(:mod:`bot.flow.delivery`): the thread's head moves to the answer once the chat has it.
Every step is recorded with the inbox entry, so a resumed event continues where it
stopped — an answer that was stored is re-sent, never paid for again, and a model call
that was under way when the process died is not repeated behind the user's back. It
never decides what an event is: that is the router's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import bot.kit.images as imaging
from bot.core.config import Settings
from bot.core.errors import ClaimLost, LazyText, UserFacingError
from bot.core.events import Attachment, InputRefused, Progress
from bot.core.store import InboxStatus, NewImage, NewPart, Store
from bot.core.threads import Role, Thread, Turn, TurnStatus
from bot.core.work import Answer, Target, Work
from bot.flow.call_records import CallLedger
from bot.flow.choices import ChatChoices
from bot.flow.delivery import Delivery, caption_for, safe_progress, safe_send
from bot.flow.inputs import load_images
from bot.flow.marked_turns import Marking, RegionEdit, find_marking, stored_edit
from bot.flow.model_step import ModelStep, Starting
from bot.flow.retry_phrases import asks_to_retry
from bot.flow.routing import route, start_thread
from bot.kit.i18n import N_, _, ngettext
from bot.models.base import ImageModel, ModelError, Part
from bot.models.catalog import ModelCatalog
from bot.models.pricing import PriceTable
from bot.policy.access import AdminCache
from bot.policy.budgets import Budgets, Clock, LimitReached
from bot.policy.moderation import Moderation
from bot.provenance.credentials import ContentCredentials
from bot.provenance.outgoing import Provenance

log = logging.getLogger(__name__)

GENERIC_FAILURE = N_("Sorry, something went wrong on my side. Please try again in a moment.")
INTERRUPTED = N_(
    "I was restarted while the model was working on this, so I can't tell whether it "
    "finished. Reply “try again” to run it once more."
)
CONVERSATION_RESET = N_("That conversation was reset. Please send it again.")


class TurnService:
    """See the module docstring. One per process, shared by every event."""

    def __init__(self, store: Store, model: ImageModel, settings: Settings, *,
                 admins: AdminCache | None = None, catalog: ModelCatalog | None = None,
                 clock: Clock = time.time,
                 credentials: ContentCredentials | None = None) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        self.admins = admins or AdminCache(settings)
        #: "now" in epoch seconds, for budgets and usage records (tests move it)
        self.clock = clock
        self.choices = ChatChoices(store, model, settings, catalog=catalog)
        self.prices = PriceTable.from_settings(settings)
        self.budgets = Budgets(store, settings, self.prices, clock=lambda: self.clock())
        self.calls = CallLedger(store, self.prices, clock=lambda: self.clock())
        self.provenance = Provenance(store, credentials,
                                     path_limit=settings.chatbrush_context_turns)
        self.delivery = Delivery(store, settings, self.choices, self.provenance)
        self.model_step = ModelStep(store, settings, self.choices, self.budgets, self.calls)
        #: blocked terms and patterns, checked before anything of a prompt is kept
        self.moderation = Moderation.from_settings(settings)

    # ------------------------------------------------------------------ admission
    async def admit(self, work: Work, *, calls: int) -> None:
        """Raise :class:`UserFacingError` (a :class:`LimitReached`) when ``calls`` more
        model calls for this event are not allowed now (budgets, rate limits); all of
        them are reserved before any starts. Call it once per event for all its calls:
        how many is known only once the event is routed, so the middleware chain
        (:class:`bot.flow.middleware.Reservations`) only gives back what is unused."""
        chosen = await self.choices.settings_for(work)
        exempt = self.settings.chatbrush_exempt_admins and self.admins.is_operator(work.event)
        await self.budgets.admit(work, chosen, calls=calls, exempt=exempt)

    async def release(self, work: Work) -> None:
        """The event is finished: what :meth:`admit` reserved and no call used is free."""
        await self.budgets.release(work)

    async def screen(self, work: Work, text: str) -> None:
        """Blocked terms and patterns: the polite refusal comes before any turn, thread or
        download exists (matching runs off the loop, under a time limit)."""
        chosen = await self.choices.settings_for(work)
        await asyncio.to_thread(self.moderation.screen, text, chosen.blocked_terms,
                                user_id=work.event.sender.id, where=str(work.event.chat))

    # ------------------------------------------------------------------ resuming
    async def resume(self, work: Work) -> InboxStatus:
        """An event an earlier attempt got into: deliver the stored answer, tell about an
        interrupted call, or make the call a stored turn still waits for."""
        entry = work.entry
        if entry.answer_turn_id is not None:
            answer = await self.store.get_turn(entry.answer_turn_id)
            if answer is None:
                raise UserFacingError(LazyText(CONVERSATION_RESET))
            if answer.status is TurnStatus.UNDELIVERED:
                await self.delivery.deliver(work, answer, caption_for(answer),
                                            done_event=entry.id)
            return InboxStatus.DONE
        assert entry.turn_id is not None
        turn = await self.store.get_turn(entry.turn_id)
        if turn is None:
            raise UserFacingError(LazyText(CONVERSATION_RESET))
        if entry.call_started:
            return await self._interrupted(work, turn)
        if turn.text and turn.status is TurnStatus.OK:
            region = await stored_edit(self.store, turn.id, turn.parent_id)
            return await self._call_model(work, turn, region=region)
        return InboxStatus.DONE  # a bare picture, already stored and asked about

    async def _interrupted(self, work: Work, user_turn: Turn) -> InboxStatus:
        """A model call was under way when the process stopped: it may have been paid
        for, so it is not repeated unasked; the turn is kept for "try again"."""
        log.warning("message %s: a model call was interrupted by a restart",
                    work.event.message_id)
        await self.store.mark_failed(user_turn.id, "interrupted")
        await self.delivery.tell_about(work, user_turn, _(INTERRUPTED))
        return InboxStatus.FAILED

    async def salvage(self, work: Work, *, reason: str) -> None:
        """After an unexpected error: keep what the user sent as a failed turn, so "try
        again" works without sending it again, and tell them in one short line."""
        try:
            entry = await self.store.inbox_get(work.entry.id)
            turn = None
            if entry is not None and entry.turn_id is not None and entry.answer_turn_id is None:
                turn = await self.store.get_turn(entry.turn_id)
                if turn is not None and turn.status is TurnStatus.OK and turn.text:
                    await self.store.mark_failed(turn.id, f"error: {reason}")
            await safe_progress(work.channel, Progress.FAILED)
            ids = await safe_send(work.channel, _(GENERIC_FAILURE))
            if turn is not None:
                for message_id in ids:
                    await self.store.link_message(work.event.chat, message_id, turn)
        except Exception:
            log.exception("could not record the failure of message %s", work.event.message_id)

    # ------------------------------------------------------------------ routing
    async def route(self, work: Work) -> Target | None:
        """Which thread and turn the message continues; ``None``: not ours after all."""
        return await route(self.store, work)

    async def new_thread(self, work: Work, external_key: str | None = None) -> Thread:
        return await start_thread(self.store, work, external_key)

    async def load_images(self, work: Work, attachments: Sequence[Attachment]
                          ) -> list[imaging.PreparedImage]:
        return await load_images(work, attachments, self.settings)

    # ------------------------------------------------------------------ one turn
    async def edit(self, work: Work) -> InboxStatus:
        """A plain edit turn (the prompt was screened by the middleware chain)."""
        # Validate what the user sent before any thread is created for it.
        own_images = await self.load_images(work, work.event.attachments)
        target = await self.route(work)
        if target is None:
            return InboxStatus.DONE  # not meant for us after all
        return await self.turn_at(work, target, own_images, work.event.text)

    async def turn_at(self, work: Work, target: Target,
                      own_images: Sequence[imaging.PreparedImage], text: str) -> InboxStatus:
        """One turn of ``text`` with the user's own pictures, where ``target`` says."""
        text = text.strip()
        prepared = [*await self.load_images(work, target.carried), *own_images]
        if not text and not prepared:
            raise UserFacingError(_("Tell me what to change, or send a photo."))
        thread_id = target.thread.id
        await self.delivery.deliver_pending(work, thread_id)
        parent_id = target.parent_id
        if target.follow_head:
            current = await self.store.get_thread(thread_id)
            if current is None:
                raise UserFacingError(LazyText(CONVERSATION_RESET))
            parent_id = current.head_id
        marking = Marking()
        if not prepared and text:
            retried = await self._retry_of(thread_id, parent_id)
            if retried is not None:
                prepared, instruction, marking = retried
                if instruction and asks_to_retry(text):
                    text = instruction  # "try again": the same request, not a new one
        elif text:
            marking = await find_marking(self.store, parent_id, prepared, text,
                                         max_side=self.settings.chatbrush_max_side) or marking
        parts = [NewPart(image=NewImage(p.data, p.mime_type, p.width, p.height))
                 for p in prepared]
        if marking.edit is not None and marking.shown is not None:
            # the spot outlined, then the clean picture to edit; the copy is kept beside
            shown = marking.shown
            parts = [NewPart(image=NewImage(shown.data, shown.mime_type, shown.width,
                                            shown.height)),
                     NewPart(image=marking.edit.original)]
        if text:
            parts.append(NewPart(text=text))
        sender = work.event.sender
        user_turn = await self.store.add_turn(
            thread_id, parent_id=parent_id, role=Role.USER, parts=parts,
            author_id=sender.id, author_name=sender.display_name, move_head=not text,
            event_id=work.entry.id,
        )
        if marking.edit is not None:
            await self.store.set_turn_region(user_turn.id,
                                             marking.edit.record(marking.edit.marked))
        await self.link_user_messages(work, user_turn)
        if not text:
            return await self._ask_what_to_do(work, user_turn, len(prepared))
        return await self._call_model(work, user_turn, region=marking.edit,
                                      note=marking.note)

    async def _ask_what_to_do(self, work: Work, turn: Turn, count: int) -> InboxStatus:
        """A picture with no instruction is kept as the next input; ask what to do."""
        question = ngettext("Got it. What should I do with it?",
                            "Got it. What should I do with them?", count)
        # Linked, so that replying to this question continues with the picture.
        await self.delivery.tell_about(work, turn, question)
        return InboxStatus.DONE

    async def link_user_messages(self, work: Work, turn: Turn) -> None:
        """Every message the user sent (each item of an album) leads to ``turn``, so a
        reply to any of them finds all of its pictures."""
        for message_id in work.user_message_ids:
            await self.store.link_message(work.event.chat, message_id, turn)

    async def _retry_of(self, thread_id: int, parent_id: int | None
                        ) -> tuple[list[imaging.PreparedImage], str, Marking] | None:
        """The pictures and the instruction of the newest failed attempt right here, so
        "try again" needs no re-upload and repeats what was asked (on the same region,
        when it was a region edit)."""
        for failed in await self.store.failed_children(parent_id, thread_id):
            if not failed.images and not failed.text:
                continue
            if await self.store.missing_images([ref.sha256 for ref in failed.images]):
                continue  # its pictures were purged: nothing to repeat from here
            return [
                imaging.PreparedImage(await self.store.image_bytes(ref.sha256),
                                      ref.mime_type, ref.width, ref.height)
                for ref in failed.images
            ], failed.text, Marking(await stored_edit(self.store, failed.id, parent_id))
        return None

    async def _call_model(self, work: Work, user_turn: Turn, *,
                          region: RegionEdit | None = None, note: str = "") -> InboxStatus:
        async def starting() -> None:
            # Recorded as the request leaves: if the process dies during the call, the
            # resumed event knows it may have been paid for and does not make a second
            # one unasked (a request still waiting in the bot was not, and is not marked).
            if not await self.store.inbox_mark_call_started(work.entry.id, owner=work.owner):
                raise ClaimLost(f"message {work.event.message_id} was taken over")
            await safe_progress(work.channel, Progress.WORKING)

        try:
            await self.admit(work, calls=1)
            answer = await self.generate(work, user_turn, starting=starting,
                                         event_id=work.entry.id, region=region)
        except LimitReached as refused:
            # No call: the turn is kept, failed with the reason, so "try again" works later.
            # A flooding person is told once a window; the rest are kept quietly.
            await self.store.mark_failed(user_turn.id, refused.reason)
            if self.budgets.notices.may_refuse((work.event.platform, work.event.sender.id)):
                await self.delivery.tell_about(work, user_turn, str(refused))
            return InboxStatus.REFUSED
        if isinstance(answer, ModelError):
            await safe_progress(work.channel, Progress.FAILED)
            await self.delivery.tell_about(work, user_turn, failure_message(answer))
            return InboxStatus.FAILED
        note = answer.note + (f"\n{note}" if note else "")
        await self.delivery.deliver(work, answer.turn, caption_for(answer.turn) + note,
                                    done_event=work.entry.id)
        return InboxStatus.DONE

    # ------------------------------------------------------------------ the model call
    async def generate(self, work: Work, user_turn: Turn, *, starting: Starting,
                       event_id: int | None, reference: Sequence[Part] = (),
                       region: RegionEdit | None = None) -> Answer | ModelError:
        """The model step for ``user_turn`` (see :meth:`ModelStep.generate`)."""
        return await self.model_step.generate(work, user_turn, starting=starting,
                                              event_id=event_id, reference=reference,
                                              region=region)


def failure_message(error: ModelError) -> str:
    """What the user reads about a failed call: our line, then the model's own words."""
    message = error.user_message
    if error.text:
        message += "\n\n" + _("The model said: {text}").format(text=error.text)
    return message


__all__ = ["CONVERSATION_RESET", "GENERIC_FAILURE", "INTERRUPTED", "InputRefused",
           "TurnService", "caption_for", "failure_message"]
