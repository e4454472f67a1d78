"""One turn end to end: route → context → model → record → deliver.

The intake (:mod:`bot.flow.intake`) hands the engine one claimed inbox event at a time per
conversation. The engine works out which thread and which turn the message continues,
stores the user's turn, calls the model, stores the answer as soon as it arrives, and
only then delivers it: the thread's head moves to the answer once the chat has it. Every
step is recorded with the inbox entry, so a resumed event continues where it stopped —
an answer that was stored is re-sent, never paid for again, and a model call that was
under way when the process died is not repeated behind the user's back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

import bot.kit.images as imaging
from bot.core.config import Settings
from bot.core.errors import ClaimLost, UserFacingError
from bot.core.events import (
    Attachment,
    Channel,
    ChatKey,
    Incoming,
    InputImage,
    InputRefused,
    Progress,
)
from bot.core.store import InboxEntry, InboxStatus, NewImage, NewPart, Store
from bot.core.threads import ImageRef, Thread, Turn, TurnStatus
from bot.flow.commands import COMMANDS, Command, parse_command
from bot.flow.commands.command_context import CommandContext
from bot.flow.commands.handlers import HANDLERS
from bot.flow.commands.help_text import help_text
from bot.flow.each_wording import caption_asks_for_each
from bot.flow.retry_phrases import asks_to_retry
from bot.kit import metrics
from bot.kit.i18n import N_, _, ngettext
from bot.kit.image_types import OutputImage
from bot.models.base import (
    AnswerSlot,
    Blob,
    Content,
    FailureKind,
    GenerateRequest,
    ImageModel,
    ModelError,
    Part,
    StoredBlob,
    Usage,
)
from bot.models.catalog import ModelCatalog, UnknownModel
from bot.models.options import AUTO, aspect_ratios, nearest_ratio
from bot.models.pricing import PriceTable
from bot.models.request_context import BuiltContext, ContextPolicy, b64_len, build_context
from bot.policy.access import AdminCache
from bot.policy.budgets import Budgets, Clock, LimitReached
from bot.policy.chat_settings import ChatSettings, resolve
from bot.policy.input_limits import check_attachments
from bot.policy.moderation import Moderation
from bot.policy.retention import usable_path
from bot.provenance.credentials import ContentCredentials
from bot.provenance.outgoing import Provenance

log = logging.getLogger(__name__)

GENERIC_FAILURE = N_("Sorry, something went wrong on my side. Please try again in a moment.")
UNREADABLE_ANSWER = N_("The model service sent an answer the bot couldn't read. Please try "
                       "again.")
INTERRUPTED = N_(
    "I was restarted while the model was working on this, so I can't tell whether it "
    "finished. Reply “try again” to run it once more."
)
CONVERSATION_RESET = N_("That conversation was reset. Please send it again.")
PICTURE_NOT_STORED = N_("(Its picture is no longer stored: old pictures are removed after a "
                        "while.)")

Fetch = Callable[[Attachment], Awaitable[Sequence[InputImage]]]

#: answers one process reads, checks and stores at once: each holds megabytes until it is
#: stored, and four keep two cores busy (500 edits at once: 51 turns/s as with 8, 50 MB
#: less at the peak); the rest wait unread on their sockets
ANSWERS_IN_HAND = 4
#: deliveries whose pictures are read, signed and on their way at once. Telegram lets a
#: bot send about 30 messages a second, so a burst of finished answers queues for it; they
#: wait stored and hold no pictures (before this bound, 500 held 1.4 GB). 24 uploads of
#: half a second each still fill those 30 a second.
DELIVERIES_IN_HAND = 24


@dataclass(frozen=True)
class Work:
    """One claimed event (or album) ready for the engine.

    ``entry`` records how far earlier attempts got; ``entry_ids`` are every inbox entry
    this work finishes (the items of an album); ``event`` is what the user sent;
    ``owner`` is the process holding the claim (checked again before a model call).
    """

    entry: InboxEntry
    entry_ids: tuple[int, ...]
    event: Incoming
    channel: Channel
    fetch: Fetch
    owner: str
    #: the platform ids of every message the user sent (each item of an album)
    message_ids: tuple[str, ...] = ()
    #: the chat's settings as the event found them (see Engine.settings_for)
    chat_settings: ChatSettings | None = None

    @property
    def user_message_ids(self) -> tuple[str, ...]:
        return self.message_ids or (self.event.message_id,)


@dataclass(frozen=True)
class Answer:
    """A model answer, stored undelivered. Its pictures are read back from the store when
    they are sent, so an answer waiting to go out holds none of them."""

    turn: Turn
    note: str = ""  # e.g. that the model's input-image cap left pictures out


@dataclass(frozen=True)
class Target:
    """Where a message goes: a thread, and the turn it continues from.

    ``follow_head`` means "whatever the head is when the turn runs", so queued messages in
    one thread build on each other instead of all on the old head. ``linked`` is the turn
    a reply pointed at (it may hold the pictures of an album).
    """

    thread: Thread
    parent_id: int | None
    follow_head: bool
    carried: tuple[Attachment, ...] = ()
    linked: Turn | None = None


@dataclass
class CallRecord:
    """One model call as it is recorded: whose, which model, and how long it took."""

    work: Work
    user_turn: Turn
    model: str
    image_size: str | None
    request_bytes: int
    seconds: float = 0.0


def aspect_for(setting: str | None, path: Sequence[Turn], model: str) -> str | None:
    """The aspect ratio to ask for: the chat's, or with "auto" the allowed ratio closest
    to the picture being edited (the newest one in the conversation); ``None`` when
    there is no picture yet (the model chooses)."""
    if setting != AUTO:
        return setting
    for turn in reversed(path):
        if turn.images:
            picture = turn.images[0]
            return nearest_ratio(picture.width, picture.height, aspect_ratios(model))
    return None


class Engine:
    def __init__(self, store: Store, model: ImageModel, settings: Settings, *,
                 admins: AdminCache | None = None, catalog: ModelCatalog | None = None,
                 clock: Clock = time.time,
                 credentials: ContentCredentials | None = None) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        self.admins = admins or AdminCache(settings)
        #: the models a chat may choose from (``None``: only ``model``)
        self.catalog = catalog
        #: "now" in epoch seconds, for budgets and usage records (tests move it)
        self.clock = clock
        self.prices = PriceTable.from_settings(settings)
        self.budgets = Budgets(store, settings, self.prices, clock=lambda: self.clock())
        #: signs what goes out (Content Credentials); stored turns stay as the model sent them
        self.provenance = Provenance(store, credentials,
                                     path_limit=settings.chatbrush_context_turns)
        #: blocked terms and patterns, checked before anything of a prompt is kept
        self.moderation = Moderation.from_settings(settings)
        #: answers read and not yet stored, at most (see AnswerSlot)
        self._answers_in_hand = asyncio.Semaphore(ANSWERS_IN_HAND)
        #: deliveries holding their pictures, at most (see DELIVERIES_IN_HAND)
        self.deliveries_in_hand = asyncio.Semaphore(DELIVERIES_IN_HAND)

    async def settings_for(self, work: Work) -> ChatSettings:
        """The chat's settings for this event: read once when it was taken up, not by
        each step of a turn (there were five reads a turn)."""
        if work.chat_settings is not None:
            return work.chat_settings
        return await self.settings_for(work)

    async def chat_settings(self, chat: ChatKey) -> ChatSettings:
        """The chat's choices (model, aspect ratio, …), the operator's where it made none."""
        return resolve(self.settings, await self.store.chat_settings(chat),
                       default_model=self.model.name, allowed_model=self.allowed_model)

    def model_names(self) -> tuple[str, ...]:
        """The models a chat may choose, the default first."""
        if self.catalog is None:
            return (self.model.name,)
        names = self.catalog.names()
        return names if self.model.name in names else (self.model.name, *names)

    def allowed_model(self, name: str) -> str | None:
        """The allowed model ``name`` stands for (as the catalog spells it), or ``None``."""
        if name.strip().lower() == self.model.name.lower():
            return self.model.name
        if self.catalog is None:
            return None
        try:
            return self.catalog.entry(name.strip()).name
        except UnknownModel:
            return None

    def model_for(self, name: str) -> ImageModel:
        if name == self.model.name or self.catalog is None:
            return self.model
        if name == self.catalog.default and self.catalog.entry(name).model == self.model.name:
            return self.model  # the default, as the catalog spells it
        try:
            return self.catalog.get(name)
        except (UnknownModel, RuntimeError):
            return self.model

    async def admit(self, work: Work, *, calls: int) -> None:
        """Raise :class:`UserFacingError` (a :class:`LimitReached`) when ``calls`` more
        model calls for this event are not allowed now (budgets, rate limits); all of
        them are reserved before any starts. Call it once per event for all its calls."""
        chosen = await self.settings_for(work)
        exempt = self.settings.chatbrush_exempt_admins and self.admins.is_operator(work.event)
        await self.budgets.admit(work, chosen, calls=calls, exempt=exempt)

    async def release(self, work: Work) -> None:
        """The event is finished: what :meth:`admit` reserved and no call used is free."""
        await self.budgets.release(work)

    def help_text(self, platform: str, prefix: str = "/") -> str:
        return help_text(platform, prefix)

    # ------------------------------------------------------------------ entry points
    async def process(self, work: Work) -> InboxStatus:
        """Handle (or resume) one event; raises only :class:`UserFacingError`,
        :class:`InputRefused` and what the intake's fail-safe catches."""
        entry = work.entry
        if entry.answer_turn_id is not None:
            return await self._resume_delivery(work, entry.answer_turn_id)
        if entry.turn_id is not None:
            turn = await self.store.get_turn(entry.turn_id)
            if turn is None:
                raise UserFacingError(_(CONVERSATION_RESET))
            if entry.call_started:
                return await self._interrupted(work, turn)
            if turn.text and turn.status is TurnStatus.OK:
                return await self._call_model(work, turn)
            return InboxStatus.DONE  # a bare picture, already stored and asked about
        command = parse_command(work.event.text)
        metrics.MESSAGES.labels(work.event.platform, "command" if command else "edit").inc()
        if command is not None:
            return await self._command(command, work)
        if caption_asks_for_each(work.event.text):
            # bot.flow.each_turns builds on this module, so it is imported when first needed
            from bot.flow.each_turns import EachRequest, run_linked

            return await run_linked(self, work, EachRequest(work.event.text, typed=False))
        return await self._turn(work)

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
            await self.safe_progress(work.channel, Progress.FAILED)
            ids = await self.safe_send(work.channel, _(GENERIC_FAILURE))
            if turn is not None:
                for message_id in ids:
                    await self.store.link_message(work.event.chat, message_id, turn)
        except Exception:
            log.exception("could not record the failure of message %s", work.event.message_id)

    # ------------------------------------------------------------------ routing
    async def route(self, work: Work) -> Target | None:
        incoming = work.event
        store = self.store
        if incoming.reply_to:
            linked = await store.linked_turn(incoming.chat, incoming.reply_to)
            if linked is not None:
                thread = await store.get_thread(linked.thread_id)
                if thread is not None:
                    if linked.status is TurnStatus.FAILED:
                        return Target(thread, linked.parent_id, follow_head=False,
                                      linked=linked)
                    return Target(thread, linked.id, follow_head=False, linked=linked)
            if incoming.reply_attachments:
                thread = await self.new_thread(work)
                return Target(thread, None, follow_head=False,
                              carried=incoming.reply_attachments)
        if incoming.thread_hint:
            thread = await store.thread_by_key(incoming.chat, incoming.thread_hint)
            if thread is None:
                if not incoming.addressed and not incoming.is_private:
                    return None  # the message that was to start it was refused
                thread = await self.new_thread(work, external_key=incoming.thread_hint)
                if incoming.reply_attachments and not incoming.attachments:
                    return Target(thread, None, follow_head=False,
                                  carried=incoming.reply_attachments)
            return Target(thread, thread.head_id, follow_head=True)
        if incoming.is_private:
            thread = await store.current_thread(incoming.chat)
            if thread is None:
                thread = await self.new_thread(work)
            return Target(thread, thread.head_id, follow_head=True)
        if not incoming.addressed:
            return None
        return Target(await self.new_thread(work), None, follow_head=False)

    async def new_thread(self, work: Work, external_key: str | None = None) -> Thread:
        incoming = work.event
        thread = await self.store.create_thread(
            incoming.chat, lane=work.entry.lane, external_key=external_key,
            created_by=incoming.sender.id,
        )
        if incoming.is_private:
            await self.store.set_current_thread(incoming.chat, thread.id)
        return thread

    async def load_images(self, work: Work, attachments: Sequence[Attachment]
                           ) -> list[imaging.PreparedImage]:
        """Download (concurrently) and normalise; a bad image refuses the whole message."""
        check_attachments(attachments, self.settings)

        async def fetch(attachment: Attachment) -> Sequence[InputImage]:
            if attachment.data is not None:
                return [InputImage(attachment.data, attachment.mime_type, attachment.filename)]
            return await work.fetch(attachment)

        fetched = await asyncio.gather(*(fetch(a) for a in attachments))
        raw = [image for images in fetched for image in images]
        results = await asyncio.gather(
            *(imaging.prepare_input_async(
                image.data,
                max_side=self.settings.chatbrush_max_side,
                max_bytes=self.settings.chatbrush_max_upload_bytes,
                max_pixels=self.settings.chatbrush_max_pixels,
            ) for image in raw),
            return_exceptions=True,
        )
        prepared: list[imaging.PreparedImage] = []
        for index, result in enumerate(results, start=1):
            if isinstance(result, imaging.ImageRejected):
                metrics.REJECTED_INPUTS.labels(work.event.platform).inc()
                if len(raw) > 1:
                    raise UserFacingError(_("Image {index} of {count}: {reason}").format(
                        index=index, count=len(raw), reason=result.user_message))
                raise UserFacingError(result.user_message)
            if isinstance(result, BaseException):
                raise result
            prepared.append(result)
        return prepared

    # ------------------------------------------------------------------ one turn
    async def _turn(self, work: Work) -> InboxStatus:
        if work.event.text.strip():
            await self.screen(work, work.event.text.strip())
        # Validate what the user sent before any thread is created for it.
        own_images = await self.load_images(work, work.event.attachments)
        target = await self.route(work)
        if target is None:
            return InboxStatus.DONE  # not meant for us after all
        return await self.turn_at(work, target, own_images, work.event.text)

    async def turn_at(self, work: Work, target: Target,
                      own_images: Sequence[imaging.PreparedImage], text: str) -> InboxStatus:
        """One turn of ``text`` with the user's own pictures, where ``target`` says."""
        incoming = work.event
        text = text.strip()
        prepared = [*await self.load_images(work, target.carried), *own_images]
        if not text and not prepared:
            raise UserFacingError(_("Tell me what to change, or send a photo."))
        thread_id = target.thread.id
        await self.deliver_pending(work, thread_id)
        parent_id = target.parent_id
        if target.follow_head:
            current = await self.store.get_thread(thread_id)
            if current is None:
                raise UserFacingError(_(CONVERSATION_RESET))
            parent_id = current.head_id
        if not prepared and text:
            retried = await self._retry_of(thread_id, parent_id)
            if retried is not None:
                prepared, instruction = retried
                if instruction and asks_to_retry(text):
                    text = instruction  # "try again": the same request, not a new one
        parts = [NewPart(image=NewImage(p.data, p.mime_type, p.width, p.height))
                 for p in prepared]
        if text:
            parts.append(NewPart(text=text))
        sender = incoming.sender
        if not text:
            # A picture with no instruction: keep it as the next input, ask what to do.
            turn = await self.store.add_turn(
                thread_id, parent_id=parent_id, role="user", parts=parts,
                author_id=sender.id, author_name=sender.display_name,
                event_id=work.entry.id,
            )
            await self.link_user_messages(work, turn)
            question = ngettext("Got it. What should I do with it?",
                                "Got it. What should I do with them?", len(prepared))
            # Linked, so that replying to this question continues with the picture.
            for message_id in await self.safe_send(work.channel, question):
                await self.store.link_message(incoming.chat, message_id, turn)
            return InboxStatus.DONE
        user_turn = await self.store.add_turn(
            thread_id, parent_id=parent_id, role="user", parts=parts,
            author_id=sender.id, author_name=sender.display_name, move_head=False,
            event_id=work.entry.id,
        )
        await self.link_user_messages(work, user_turn)
        return await self._call_model(work, user_turn)

    async def link_user_messages(self, work: Work, turn: Turn) -> None:
        """Every message the user sent (each item of an album) leads to ``turn``, so a
        reply to any of them finds all of its pictures."""
        for message_id in work.user_message_ids:
            await self.store.link_message(work.event.chat, message_id, turn)

    async def screen(self, work: Work, text: str) -> None:
        """Blocked terms and patterns: the polite refusal comes before any turn, thread or
        download exists (matching runs off the loop, under a time limit)."""
        chosen = await self.settings_for(work)
        await asyncio.to_thread(self.moderation.screen, text, chosen.blocked_terms,
                                user_id=work.event.sender.id, where=str(work.event.chat))

    async def _retry_of(self, thread_id: int, parent_id: int | None
                        ) -> tuple[list[imaging.PreparedImage], str] | None:
        """The pictures and the instruction of the newest failed attempt right here, so
        "try again" needs no re-upload and repeats what was asked."""
        for failed in await self.store.failed_children(parent_id, thread_id):
            if not failed.images and not failed.text:
                continue
            if await self.store.missing_images([ref.sha256 for ref in failed.images]):
                continue  # its pictures were purged: nothing to repeat from here
            return [
                imaging.PreparedImage(await self.store.image_bytes(ref.sha256),
                                      ref.mime_type, ref.width, ref.height)
                for ref in failed.images
            ], failed.text
        return None

    async def _call_model(self, work: Work, user_turn: Turn) -> InboxStatus:
        async def starting() -> None:
            # Recorded as the request leaves: if the process dies during the call, the
            # resumed event knows it may have been paid for and does not make a second
            # one unasked (a request still waiting in the bot was not, and is not marked).
            if not await self.store.inbox_mark_call_started(work.entry.id, owner=work.owner):
                raise ClaimLost(f"message {work.event.message_id} was taken over")
            await self.safe_progress(work.channel, Progress.WORKING)

        try:
            await self.admit(work, calls=1)
            answer = await self.generate(work, user_turn, starting=starting,
                                         event_id=work.entry.id)
        except LimitReached as refused:
            # No call: the turn is kept, failed with the reason, so "try again" works later.
            await self.store.mark_failed(user_turn.id, refused.reason)
            await self._tell_about(work, user_turn, str(refused))
            return InboxStatus.FAILED
        if isinstance(answer, ModelError):
            return await self._fail(work, user_turn, answer)
        await self._deliver(work, answer.turn, caption_for(answer.turn) + answer.note,
                            done_event=work.entry.id)
        return InboxStatus.DONE

    async def generate(self, work: Work, user_turn: Turn, *,
                       starting: Callable[[], Awaitable[None]], event_id: int | None,
                       reference: Sequence[Part] = ()) -> Answer | ModelError:
        """Call the model for ``user_turn`` and store its answer, undelivered, the moment
        it arrives; a failure is recorded on the turn and returned, not told.

        ``starting`` runs once as the request leaves for the model (after it waited for a
        slot and was encoded: the model client announces it), or, for a model that does not
        announce, as soon as it answers; ``reference`` parts go in front of the new turn's
        own in the request only (a style reference); ``event_id`` records the answer with
        that inbox entry.
        """
        chosen = await self.settings_for(work)
        model = self.model_for(chosen.model)
        policy = ContextPolicy(
            byte_budget=self.settings.chatbrush_context_bytes,
            max_images=min(model.max_input_images,
                           self.settings.chatbrush_max_input_images or 14),
        )
        path = await self._recent_path(user_turn)
        context = await self._build_context(path, policy)
        contents = context.contents
        request_bytes = context.request_bytes
        if reference and contents and contents[-1].role == "user":
            contents = (*contents[:-1], Content("user", (*reference, *contents[-1].parts)))
            request_bytes += sum(len(p.text or "") + b64_len(p.image.size if p.image else 0)
                                 for p in reference)
        image_size = chosen.image_size
        request = GenerateRequest(
            contents,
            aspect_ratio=aspect_for(chosen.aspect_ratio, path, model.name),
            image_size=image_size,
        )
        announced = False

        async def announce() -> None:
            nonlocal announced
            if not announced:
                announced = True
                await starting()

        answer_slot = AnswerSlot(self._answers_in_hand)
        request = replace(request, on_send=announce, answer_slot=answer_slot)
        metrics.REQUEST_BYTES.observe(request_bytes)
        call = CallRecord(work, user_turn, model.name, image_size, request_bytes)
        try:
            async with self.budgets.slot(lambda text: self._notify_queued(work, text)):
                started = time.monotonic()
                try:
                    result = await model.generate(request)
                    await answer_slot.take()  # a model that does not read over HTTP took none
                    await announce()
                    call.seconds = time.monotonic() - started
                    outputs = [await imaging.inspect_output_async(b.data, b.mime_type)
                               for b in result.images]
                except ClaimLost:
                    raise  # another process has the message: no failure of ours to record
                except (ModelError, imaging.ImageRejected) as exc:
                    error = exc if isinstance(exc, ModelError) else ModelError(
                        FailureKind.NO_IMAGE, _("The model sent back an image I could not read. "
                                                "Please try again."), detail=str(exc))
                    call.seconds = call.seconds or time.monotonic() - started
                    await self._record_failure(call, error)
                    return error
                except Exception as exc:
                    # Whatever else a model client lets through must not lose the user's turn.
                    log.exception("model call raised %s in thread %s", type(exc).__name__,
                                  user_turn.thread_id)
                    error = ModelError(FailureKind.UNAVAILABLE, _(UNREADABLE_ANSWER),
                                       detail=f"{type(exc).__name__}: {exc}"[:500])
                    call.seconds = time.monotonic() - started
                    await self._record_failure(call, error)
                    return error
            parts: list[NewPart] = []
            outputs_iter = iter(outputs)
            for part in result.parts:
                image: NewImage | None = None
                if isinstance(part.image, Blob) and not part.thought:
                    out = next(outputs_iter)
                    # Stored exactly as the model sent it (it is replayed verbatim); what the
                    # chat was shown may be a converted copy, remade on resend.
                    image = NewImage(part.image.data, part.image.mime_type, out.width, out.height)
                elif isinstance(part.image, Blob):
                    image = NewImage(part.image.data, part.image.mime_type, 0, 0)
                parts.append(NewPart(part.text, image, part.thought, part.thought_signature,
                                     part.extra))
            # Stored the moment it arrives, before anything is sent: never lost, never paid
            # for twice. It becomes the current version only once it is delivered.
            model_turn = await self.store.add_turn(
                user_turn.thread_id, parent_id=user_turn.id, role="model", parts=parts,
                author_id="bot", author_name=model.name, status=TurnStatus.UNDELIVERED,
                move_head=False, event_id=event_id,
            )
            await self._record(call, result.usage, images=len(outputs), failure=None,
                               turn_id=model_turn.id)
            note = ""
            if context.newest_images_capped:
                note = "\n" + _("(This model takes {count} images at most; {left} of yours were "
                                 "left out.)").format(count=context.images_sent,
                                                      left=context.newest_images_capped)
            return Answer(model_turn, note)
        finally:
            answer_slot.give_back()  # the answer is stored (or failed)

    async def _recent_path(self, user_turn: Turn) -> list[Turn]:
        """The newest turns of the path, as many as ``CHATBRUSH_CONTEXT_TURNS`` (a long
        thread costs no more per turn than a short one), reaching further back only if
        the picture being edited lies beyond them."""
        limit = self.settings.chatbrush_context_turns
        path = await self.store.path(user_turn.id, limit=limit)
        if len(path) >= limit and not any(t.images for t in path[:-1]):
            path = await self.store.path(user_turn.id)
        return [t for t in path if t.status is TurnStatus.OK]

    async def _record(self, call: CallRecord, usage: Usage | None, *, images: int,
                      failure: FailureKind | None, turn_id: int | None = None) -> None:
        """The call's usage, cost and latency, in the store and in the metrics."""
        usage = usage or Usage()
        cost = self.prices.cost(call.model, usage, images=images, image_size=call.image_size)
        outcome = "ok" if failure is None else failure.value
        metrics.MODEL_SECONDS.labels(call.model).observe(call.seconds)
        metrics.MODEL_CALLS.labels(call.model, outcome).inc()
        metrics.MODEL_COST.labels(call.model).inc(cost / 1e6)
        metrics.CALL_COST.labels(call.model).observe(cost / 1e6)
        incoming = call.work.event
        await self.store.record_usage(
            chat=incoming.chat, user_id=incoming.sender.id,
            thread_id=call.user_turn.thread_id, model=call.model, ok=failure is None,
            images=images, prompt_tokens=usage.prompt_tokens,
            output_tokens=usage.output_tokens, request_bytes=call.request_bytes,
            cost_micros=cost, latency_ms=round(call.seconds * 1000),
            failure=None if failure is None else failure.value, at=self.clock(),
            event_id=call.work.entry.id, turn_id=turn_id,
        )

    async def _notify_queued(self, work: Work, text: str) -> None:
        await self.safe_send(work.channel, text)
        await self.safe_progress(work.channel, Progress.QUEUED)

    async def _build_context(self, path: list[Turn], policy: ContextPolicy) -> BuiltContext:
        """Assemble the request; the pictures it keeps are read only as it goes out."""
        path = await usable_path(self.store, path)  # pictures that are gone: a marker
        read = self.store.image_bytes

        def stored(ref: ImageRef) -> StoredBlob:
            return StoredBlob(ref.mime_type, ref.size, functools.partial(read, ref.sha256))

        return build_context(path, policy, stored)

    async def _record_failure(self, call: CallRecord, error: ModelError) -> None:
        """Keep the turn for "try again" (out of context) and count the failed call."""
        user_turn = call.user_turn
        log.warning("model call failed in thread %s: %s (%s)", user_turn.thread_id,
                    error.kind.value, error.detail or error.user_message)
        await self.store.mark_failed(user_turn.id, error.kind.value)
        await self._record(call, error.usage, images=0, failure=error.kind)

    async def _fail(self, work: Work, user_turn: Turn, error: ModelError) -> InboxStatus:
        await self.safe_progress(work.channel, Progress.FAILED)
        await self._tell_about(work, user_turn, failure_message(error))
        return InboxStatus.FAILED

    async def _tell_about(self, work: Work, turn: Turn, text: str) -> None:
        """Send ``text`` linked to ``turn``: a reply to it ("try again") finds the turn."""
        for message_id in await self.safe_send(work.channel, text):
            await self.store.link_message(work.event.chat, message_id, turn)

    # ------------------------------------------------------------------ resuming
    async def _interrupted(self, work: Work, user_turn: Turn) -> InboxStatus:
        """A model call was under way when the process stopped: it may have been paid
        for, so it is not repeated unasked; the turn is kept for "try again"."""
        log.warning("message %s: a model call was interrupted by a restart",
                    work.event.message_id)
        await self.store.mark_failed(user_turn.id, "interrupted")
        await self._tell_about(work, user_turn, _(INTERRUPTED))
        return InboxStatus.FAILED

    async def _resume_delivery(self, work: Work, answer_turn_id: int) -> InboxStatus:
        turn = await self.store.get_turn(answer_turn_id)
        if turn is None:
            raise UserFacingError(_(CONVERSATION_RESET))
        if turn.status is TurnStatus.UNDELIVERED:
            await self._deliver(work, turn, caption_for(turn), done_event=work.entry.id)
        return InboxStatus.DONE

    async def deliver_pending(self, work: Work, thread_id: int) -> bool:
        """Pictures of this thread that could not be sent earlier; ``True`` if any."""
        pending = await self.store.undelivered(thread_id)
        for turn in pending:
            await self._deliver(work, turn, caption_for(turn), done_event=None)
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

    # ------------------------------------------------------------------ delivery
    async def _deliver(self, work: Work, turn: Turn, caption: str, *,
                       done_event: int | None) -> bool:
        """Send a stored answer, retrying with backoff; only a delivered answer becomes
        the thread's current version. ``False`` when it could not be sent (it stays
        stored). Its pictures are read and signed once a delivery slot is free."""
        channel = work.channel
        chosen = await self.settings_for(work)
        failure: Exception | None = None
        async with self.deliveries_in_hand:
            outputs = await self.stored_outputs(turn)
            out = await self.provenance.outgoing(turn, outputs, chosen)
            try:
                ids = await self.send_with_retries(channel, out.images, caption,
                                                   as_files=out.as_files)
            except Exception as exc:
                failure = exc
        if failure is not None:
            log.warning("could not deliver v%s of thread %s: %s: %s", turn.version,
                        turn.thread_id, type(failure).__name__, str(failure)[:200])
            metrics.UNDELIVERED.labels(work.event.platform).inc()
            await self.safe_progress(channel, Progress.FAILED)
            label = f"v{turn.version}" if turn.version else "…"
            resend = f"{work.event.command_prefix}resend"
            await self._tell_about(
                work, turn,
                _("Your picture ({label}) is ready, but I couldn't send it here. I'll send "
                  "it again with your next message in this conversation, or use {resend}."
                  ).format(label=label, resend=resend),
            )
            return False
        await self.store.mark_delivered(turn, chat=work.event.chat, message_ids=ids,
                                        move_head=True, done_event=done_event)
        metrics.IMAGES_OUT.labels(work.event.platform).inc(len(outputs))
        await self.safe_progress(channel, Progress.DONE)
        return True

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

    # ------------------------------------------------------------------ commands
    async def _command(self, command: Command, work: Work) -> InboxStatus:
        incoming = work.event
        spec = next((c for c in COMMANDS if c.name == command.name), None)
        p = incoming.command_prefix
        if spec is None or command.name not in HANDLERS:
            raise UserFacingError(_("I don't know {command}. Try {help}.").format(
                command=f"{p}{command.name}", help=f"{p}help"))
        if spec.thread_scoped and incoming.thread_unknown and not incoming.is_private:
            raise UserFacingError(
                _("I can't tell which conversation {command} is meant for here: type it "
                  "inside the thread you want to change.").format(command=f"{p}{command.name}")
            )
        await HANDLERS[command.name](CommandContext(self, work, command))
        return InboxStatus.DONE

    async def send_linked(self, work: Work, turn: Turn, caption: str) -> None:
        """Show a stored turn's pictures again, linked to it (replies continue from it)."""
        try:
            if await self.store.missing_images([ref.sha256 for ref in turn.images]):
                ids = await work.channel.send_text(f"{caption} {_(PICTURE_NOT_STORED)}")
            else:
                out = await self.provenance.outgoing(turn, await self.stored_outputs(turn),
                                                     await self.settings_for(work))
                ids = await work.channel.send_images(out.images, caption,
                                                     as_files=out.as_files)
        except Exception:
            log.exception("could not send a stored picture")
            return
        for message_id in ids:
            await self.store.link_message(work.event.chat, message_id, turn)

    # ------------------------------------------------------------------ helpers
    async def safe_send(self, channel: Channel, text: str) -> list[str]:
        try:
            return await channel.send_text(text)
        except Exception:
            log.exception("could not send a reply")
            return []

    async def safe_progress(self, channel: Channel, state: Progress) -> None:
        try:
            await channel.progress(state)
        except Exception:
            log.warning("progress signal %s failed", state.value, exc_info=True)


def failure_message(error: ModelError) -> str:
    """What the user reads about a failed call: our line, then the model's own words."""
    message = error.user_message
    if error.text:
        message += "\n\n" + _("The model said: {text}").format(text=error.text)
    return message


def caption_for(turn: Turn) -> str:
    """``v3 — what the model said``: the same words when an answer is sent again."""
    return f"v{turn.version}" + (f" — {turn.text}" if turn.text else "")


__all__ = ["GENERIC_FAILURE", "Answer", "Engine", "InputRefused", "Target", "Work",
           "caption_for", "failure_message"]
