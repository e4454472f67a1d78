"""The model step of a turn: its context built from the thread, the call made under the
budgets' concurrency cap, and the answer stored — undelivered — the moment it arrives.

A failure is recorded on the user's turn (kept for "try again") and returned, never told
here: telling is the caller's, which knows whether one picture of several failed or the
only one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import bot.kit.images as imaging
from bot.core.config import Settings
from bot.core.errors import ClaimLost
from bot.core.events import Progress
from bot.core.failures import FailureKind
from bot.core.store import NewImage, NewPart, Store
from bot.core.threads import ImageRef, Role, Turn, TurnStatus
from bot.core.work import Answer, Work
from bot.flow.call_records import CallLedger, CallRecord
from bot.flow.choices import ChatChoices
from bot.flow.delivery import safe_progress, safe_send
from bot.flow.ignored_settings import tell_once
from bot.flow.marked_turns import REGION_INSTRUCTION, Blended, RegionEdit, blend_answer
from bot.kit import metrics
from bot.kit.i18n import N_, _
from bot.kit.image_types import OutputImage
from bot.models.base import (
    AnswerSlot,
    Blob,
    Content,
    GenerateRequest,
    GenerateResult,
    ImageModel,
    ModelError,
    Part,
    StoredBlob,
)
from bot.models.options import AUTO, aspect_ratios, nearest_ratio
from bot.models.request_context import BuiltContext, ContextPolicy, b64_len, build_context
from bot.policy.budgets import Budgets
from bot.policy.retention import usable_path

log = logging.getLogger(__name__)

UNREADABLE_ANSWER = N_("The model service sent an answer the bot couldn't read. Please try "
                       "again.")
UNREADABLE_IMAGE = N_("The model sent back an image I could not read. Please try again.")

#: answers one process reads, checks and stores at once: each holds megabytes until it is
#: stored, and four keep two cores busy (500 edits at once: 51 turns/s as with 8, 50 MB
#: less at the peak); the rest wait unread on their sockets
ANSWERS_IN_HAND = 4

Starting = Callable[[], Awaitable[None]]


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


class _Once:
    """``starting`` run once: as the request leaves, or when the answer comes back from a
    model client that does not announce."""

    def __init__(self, starting: Starting) -> None:
        self._starting = starting
        self._done = False

    async def __call__(self) -> None:
        if not self._done:
            self._done = True
            await self._starting()


@dataclass(frozen=True)
class _Blend:
    """A region edit's answer: the model's own picture (``None`` when it was kept as the
    version because the model redrew everything) and the line saying which it was."""

    kept: NewImage | None
    note: str


class ModelStep:
    """See the module docstring. One per process, shared by every turn."""

    def __init__(self, store: Store, settings: Settings, choices: ChatChoices,
                 budgets: Budgets, calls: CallLedger) -> None:
        self.store = store
        self.settings = settings
        self.choices = choices
        self.budgets = budgets
        self.calls = calls
        #: answers read and not yet stored, at most (see AnswerSlot)
        self._answers_in_hand = asyncio.Semaphore(ANSWERS_IN_HAND)

    async def generate(self, work: Work, user_turn: Turn, *, starting: Starting,
                       event_id: int | None, reference: Sequence[Part] = (),
                       region: RegionEdit | None = None) -> Answer | ModelError:
        """Call the model for ``user_turn`` and store its answer, undelivered, the moment
        it arrives; a failure is recorded on the turn and returned, not told.

        ``starting`` runs once as the request leaves for the model (after it waited for a
        slot and was encoded: the model client announces it), or, for a model that does not
        announce, as soon as it answers; ``reference`` parts go in front of the new turn's
        own in the request only (a style reference); ``event_id`` records the answer with
        that inbox entry. With ``region`` the request shows the model the clean original
        and the spot, and its answer is blended into the original there only.
        """
        if region is not None:  # what the two pictures of the user's turn are
            reference = (*reference, Part(text=REGION_INSTRUCTION))
        chosen = await self.choices.settings_for(work)
        model = self.choices.model_for(chosen.model)
        path = await self._recent_path(user_turn)
        context = await self._build_context(path, self._context_policy(model))
        contents, request_bytes = with_reference(context, reference)
        announce = _Once(starting)
        answer_slot = AnswerSlot(self._answers_in_hand)
        request = GenerateRequest(
            contents, aspect_ratio=aspect_for(chosen.aspect_ratio, path, model.name),
            image_size=chosen.image_size, on_send=announce, answer_slot=answer_slot,
        )
        metrics.REQUEST_BYTES.observe(request_bytes)
        call = CallRecord(work, user_turn, model.name, chosen.image_size, request_bytes)
        try:
            async with self.budgets.slot(work, lambda text: self._notify_queued(work, text)):
                called = await self._call(model, request, call, announce, answer_slot)
            if isinstance(called, ModelError):
                return called
            answer = await self._store_answer(call, model, *called, event_id=event_id,
                                              region=region)
            ignored = await tell_once(self.store, work.event.chat, model, request, called[1],
                                      chat_aspect=chosen.aspect_ratio,
                                      on_record=chosen.ignored_on_record)
            return replace(answer, note=capped_note(context) + answer.note + ignored)
        finally:
            answer_slot.give_back()  # the answer is stored (or failed)

    def _context_policy(self, model: ImageModel) -> ContextPolicy:
        return ContextPolicy(
            byte_budget=self.settings.chatbrush_context_bytes,
            max_images=min(model.max_input_images,
                           self.settings.chatbrush_max_input_images or 14),
        )

    async def _call(self, model: ImageModel, request: GenerateRequest, call: CallRecord,
                    announce: _Once, answer_slot: AnswerSlot
                    ) -> tuple[GenerateResult, list[OutputImage]] | ModelError:
        """The call itself, its pictures checked; any failure recorded and returned."""
        started = time.monotonic()
        try:
            result = await model.generate(request)
            await answer_slot.take()  # a model that does not read over HTTP took none
            await announce()
            call.seconds = time.monotonic() - started
            outputs = [await imaging.inspect_output_async(b.data, b.mime_type)
                       for b in result.images]
            return result, outputs
        except ClaimLost:
            raise  # another process has the message: no failure of ours to record
        except (ModelError, imaging.ImageRejected) as exc:
            error = exc if isinstance(exc, ModelError) else ModelError(
                FailureKind.NO_IMAGE, _(UNREADABLE_IMAGE), detail=str(exc))
        except Exception as exc:
            # Whatever else a model client lets through must not lose the user's turn.
            log.exception("model call raised %s in thread %s", type(exc).__name__,
                          call.user_turn.thread_id)
            error = ModelError(FailureKind.UNAVAILABLE, _(UNREADABLE_ANSWER),
                               detail=f"{type(exc).__name__}: {exc}"[:500])
            call.seconds = 0.0
        call.seconds = call.seconds or time.monotonic() - started
        await self.calls.record_failure(call, error)
        return error

    async def _store_answer(self, call: CallRecord, model: ImageModel,
                            result: GenerateResult, outputs: list[OutputImage], *,
                            event_id: int | None, region: RegionEdit | None = None
                            ) -> Answer:
        """Stored the moment it arrives, before anything is sent: never lost, never paid
        for twice. It becomes the current version only once it is delivered."""
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
        blended = await self._blend(parts, region) if region is not None else None
        user_turn = call.user_turn
        model_turn = await self.store.add_turn(
            user_turn.thread_id, parent_id=user_turn.id, role=Role.MODEL, parts=parts,
            author_id="bot", author_name=model.name, status=TurnStatus.UNDELIVERED,
            move_head=False, event_id=event_id,
        )
        await self.calls.record(call, result.usage, images=len(outputs), failure=None,
                                turn_id=model_turn.id)
        if region is None or blended is None:
            return Answer(model_turn)
        await self.store.set_turn_region(model_turn.id, region.record(blended.kept))
        return Answer(model_turn, note=f"\n{blended.note}" if blended.note else "")

    async def _blend(self, parts: list[NewPart], region: RegionEdit) -> _Blend | None:
        """The model's picture put into the original inside the region (in ``parts``, in
        place of the model's own, which is returned to be kept beside the turn)."""
        index = next((i for i, p in enumerate(parts)
                      if isinstance(p.image, NewImage) and not p.thought), None)
        if index is None:
            return None  # no picture: nothing to blend
        part = parts[index]
        answer = part.image
        assert isinstance(answer, NewImage)
        try:
            original = await self.store.image_bytes(region.original.sha256)
        except LookupError:  # removed meanwhile: the answer is kept as the model drew it
            return None
        done: Blended = await asyncio.to_thread(blend_answer, original, answer.data,
                                                region.region)
        if done.picture is None:
            return _Blend(None, done.note)
        parts[index] = replace(part, image=done.picture)
        return _Blend(answer, done.note)

    async def _recent_path(self, user_turn: Turn) -> list[Turn]:
        """The newest turns of the path, as many as ``CHATBRUSH_CONTEXT_TURNS`` (a long
        thread costs no more per turn than a short one), reaching further back only if
        the picture being edited lies beyond them."""
        limit = self.settings.chatbrush_context_turns
        path = await self.store.path(user_turn.id, limit=limit)
        if len(path) >= limit and not any(t.images for t in path[:-1]):
            path = await self.store.path(user_turn.id)
        return [t for t in path if t.status is TurnStatus.OK]

    async def _notify_queued(self, work: Work, text: str) -> None:
        await safe_send(work.channel, text)
        await safe_progress(work.channel, Progress.QUEUED)

    async def _build_context(self, path: list[Turn], policy: ContextPolicy) -> BuiltContext:
        """Assemble the request; the pictures it keeps are read only as it goes out."""
        path = await usable_path(self.store, path)  # pictures that are gone: a marker
        read = self.store.image_bytes

        def stored(ref: ImageRef) -> StoredBlob:
            return StoredBlob(ref.mime_type, ref.size, functools.partial(read, ref.sha256))

        return build_context(path, policy, stored)


def with_reference(context: BuiltContext, reference: Sequence[Part]
                   ) -> tuple[tuple[Content, ...], int]:
    """The request's contents with ``reference`` parts in front of the new turn's own,
    and its size in bytes."""
    contents = tuple(context.contents)
    request_bytes = context.request_bytes
    if reference and contents and contents[-1].role == "user":
        contents = (*contents[:-1], Content("user", (*reference, *contents[-1].parts)))
        request_bytes += sum(len(p.text or "") + b64_len(p.image.size if p.image else 0)
                             for p in reference)
    return contents, request_bytes


def capped_note(context: BuiltContext) -> str:
    """That the model's input-image cap left some of the user's pictures out."""
    if not context.newest_images_capped:
        return ""
    return "\n" + _("(This model takes {count} images at most; {left} of yours were "
                    "left out.)").format(count=context.images_sent,
                                         left=context.newest_images_capped)
