"""Linked edits: the same instruction on each of several pictures, one result per picture.

Several pictures in one message are fused into one result by default. ``/each`` — or a
caption that plainly asks for each picture (:mod:`bot.flow.each_wording`) — runs one edit per
picture instead. Every picture gets a user turn of its own, all children of the same
starting point, so every result is a version on a branch of its own and a reply to any
one of them continues that one alone. The calls run concurrently, all of them admitted
before any starts; the results go out together in the pictures' order as one message (one
Telegram album, one Slack message, one console line per file), each platform message
linked to its own result. A picture that fails is named with the reason; the others are
delivered. ``/each`` with no pictures of its own works on an album sent earlier: the one
it replies to, or (in a private chat) the pictures still waiting for an instruction.

Consistent mode (``/each consistent …``) edits one picture first and passes its result
to the others as a style reference, so a set of product shots comes out alike.

Durability follows the turn service's single turn: the user turns are recorded with the inbox
entry in one commit (:meth:`bot.core.store.Store.add_linked_turns`), each call is marked as
begun right before it starts, each answer is stored the moment it arrives. A resumed
event runs only the calls never begun, names the ones a restart interrupted instead of
paying for them twice, and sends only what was not delivered yet.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from bot.core.errors import ClaimLost, LazyText, UserFacingError
from bot.core.events import Progress
from bot.core.store import InboxStatus, LinkedTurn, NewImage, NewPart
from bot.core.threads import Role, Turn, TurnStatus
from bot.core.work import Target, Work
from bot.flow.delivery import safe_progress, safe_send
from bot.flow.each_wording import classify_caption
from bot.flow.turns import CONVERSATION_RESET, GENERIC_FAILURE, TurnService, failure_message
from bot.kit import metrics
from bot.kit.i18n import N_, _
from bot.kit.image_types import OutputImage
from bot.models.base import Blob, ModelError, Part
from bot.policy.input_limits import MAX_ATTACHMENTS, TOO_MANY_FILES

log = logging.getLogger(__name__)

#: a first word of ``/each`` that asks for consistent mode
CONSISTENT_WORDS = frozenset({"consistent", "一致", "统一", "統一", "统一风格", "統一風格"})
#: what the model reads in front of a picture in consistent mode (not shown to users)
STYLE_REFERENCE = (
    "Style reference: another picture of this set, already edited with the same "
    "instruction. Give the next picture the same look; edit only the picture that follows."
)
HOW_TO = N_("{each} makes the same edit on each of several pictures: send them together "
            "with it, or reply with it to an album you sent.")
NO_INSTRUCTION = N_("Tell me what to do with each picture, for example: {each} make the "
                    "background white")
RESULTS = N_("Each picture edited on its own, in the order you sent them: {versions}. "
             "Reply to one of them to keep editing it.")
PICTURE_FAILED = N_("Picture {number} of {total} was not edited: {reason}")
PICTURE_SAID = N_("Picture {number} of {total}: {text}")
INTERRUPTED_ONE = N_("I was restarted while the model was working on it, so I can't tell "
                     "whether it finished. Send it again to retry.")
FAILED_EARLIER = N_("the model call failed ({reason}).")
NOT_SENT = N_("Your pictures ({versions}) are ready, but I couldn't send them here. I'll "
              "send them again with your next message in this conversation, or use "
              "{resend}.")
SLASH = N_("Send {each} in a message with the pictures, or as a reply to them.")


@dataclass(frozen=True)
class EachRequest:
    """What was asked: the instruction, whether to keep the results alike, and whether
    ``/each`` was typed (or a caption read as asking for each picture)."""

    instruction: str
    consistent: bool = False
    typed: bool = True


def parse_each(args: str) -> EachRequest:
    """``/each consistent make it white`` → the instruction and consistent mode.

    "each" stays in the instruction where it began a phrase (``each of them in
    watercolor``, typed bare in Slack): the model should read the sentence as written.
    """
    words = args.split(maxsplit=1)
    consistent = bool(words) and words[0].casefold() in CONSISTENT_WORDS
    instruction = (words[1] if len(words) > 1 else "") if consistent else args.strip()
    phrase = classify_caption(f"each {instruction}").each_phrase
    if instruction and phrase is not None and phrase.startswith("each "):
        instruction = f"each {instruction}"
    return EachRequest(instruction, consistent=consistent)


async def run_linked(turns: TurnService, work: Work, request: EachRequest) -> InboxStatus:
    """Handle (or resume) an event that asks for the same edit on each picture (its
    instruction was screened for blocked terms by the middleware chain, unless the
    event is resumed)."""
    run = _LinkedRun(turns, work, request)
    recorded = await turns.store.inbox_linked_turns(work.entry.id)
    if recorded:
        return await run.resume(recorded)
    return await run.start()


@dataclass
class _Slot:
    """One picture of a linked edit and how far it got."""

    position: int
    user_turn: Turn
    runnable: bool = True  # its model call has not begun
    answer: Turn | None = None  # the stored answer (undelivered or delivered)
    outputs: list[OutputImage] = field(default_factory=list)
    failure: str | None = None


class _LinkedRun:
    def __init__(self, turns: TurnService, work: Work, request: EachRequest) -> None:
        self.turns = turns
        self.delivery = turns.delivery
        self.store = turns.store
        self.work = work
        self.request = request
        self.each = f"{work.event.command_prefix}each"

    # ------------------------------------------------------------------ starting
    async def start(self) -> InboxStatus:
        service, work, incoming = self.turns, self.work, self.work.event
        if incoming.thread_unknown:
            raise UserFacingError(_(SLASH).format(each=self.each))
        own = await service.load_images(work, incoming.attachments)
        target = await service.route(work)
        if target is None:
            return InboxStatus.DONE  # not meant for us after all
        pictures = [*await service.load_images(work, target.carried), *own]
        album = await self._album_at(target) if not pictures else None
        if len(pictures) < 2 and album is None:
            if self.request.typed and not pictures:
                raise UserFacingError(_(HOW_TO).format(each=self.each))
            # one picture: an ordinary edit with the instruction
            text = self.request.instruction if self.request.typed else incoming.text
            return await service.turn_at(work, replace(target, carried=()), pictures, text)
        count = len(album.images) if album is not None else len(pictures)
        if count > MAX_ATTACHMENTS:
            raise UserFacingError(LazyText(TOO_MANY_FILES, count=count, limit=MAX_ATTACHMENTS))
        instruction = self.request.instruction or (album.text if album is not None else "")
        if not instruction:
            raise UserFacingError(_(NO_INSTRUCTION).format(each=self.each))

        thread_id = target.thread.id
        parent_id = await self._parent(target, album)
        await service.admit(work, calls=count)
        await self.delivery.deliver_pending(work, thread_id)
        sender = incoming.sender
        if album is None:
            # The pictures as sent, in one turn off every path: a later reply to the album
            # (another /each, or "combine them") finds all of them.
            album = await self.store.add_turn(
                thread_id, parent_id=parent_id, role=Role.USER,
                parts=[NewPart(image=NewImage(p.data, p.mime_type, p.width, p.height))
                       for p in pictures],
                author_id=sender.id, author_name=sender.display_name, move_head=False,
            )
        await service.link_user_messages(work, album)
        turns = await self.store.add_linked_turns(
            thread_id, parent_id=parent_id,
            turns=[[NewPart(image=ref), NewPart(text=instruction)] for ref in album.images],
            author_id=sender.id, author_name=sender.display_name, event_id=work.entry.id,
        )
        return await self._run([_Slot(i, turn) for i, turn in enumerate(turns)])

    async def _album_at(self, target: Target) -> Turn | None:
        """Pictures sent earlier that the message points at: the turn it replies to, or
        the conversation's current turn when it replies to nothing."""
        candidate = target.linked
        if candidate is None and target.follow_head:
            thread = await self.store.get_thread(target.thread.id)
            if thread is not None and thread.head_id is not None:
                candidate = await self.store.get_turn(thread.head_id)
        if candidate is not None and candidate.role == "user" and len(candidate.images) >= 2:
            return candidate
        return None

    async def _parent(self, target: Target, album: Turn | None) -> int | None:
        """Where the edits grow from: where the album grew from, or the message's place."""
        if album is not None:
            return album.parent_id
        if target.follow_head:
            current = await self.store.get_thread(target.thread.id)
            if current is None:
                raise UserFacingError(LazyText(CONVERSATION_RESET))
            return current.head_id
        return target.parent_id

    # ------------------------------------------------------------------ resuming
    async def resume(self, recorded: list[LinkedTurn]) -> InboxStatus:
        slots: list[_Slot] = []
        for position, step in enumerate(recorded):
            turn = await self.store.get_turn(step.turn_id)
            if turn is None:
                raise UserFacingError(LazyText(CONVERSATION_RESET))
            slots.append(_Slot(position, turn))
        ids = {slot.user_turn.id for slot in slots}
        answers = {t.parent_id: t for t in await self.store.turns_of(slots[0].user_turn.thread_id)
                   if t.is_model and t.parent_id in ids}
        for slot, step in zip(slots, recorded, strict=True):
            slot.answer = answers.get(slot.user_turn.id)
            slot.runnable = False
            if slot.answer is not None:
                pass  # delivered before, or sent with the others (see _deliver)
            elif slot.user_turn.status is TurnStatus.FAILED:
                reason = slot.user_turn.error or "error"
                slot.failure = _(FAILED_EARLIER).format(reason=reason)
            elif step.call_started:
                # It may have been paid for: not repeated unasked, the turn kept for a retry.
                log.warning("message %s: a linked edit was interrupted by a restart",
                            self.work.event.message_id)
                await self.store.mark_failed(slot.user_turn.id, "interrupted")
                slot.failure = _(INTERRUPTED_ONE)
            else:
                slot.runnable = True
        waiting = [slot for slot in slots if slot.runnable]
        if waiting:
            try:
                await self.turns.admit(self.work, calls=len(waiting))
            except UserFacingError as refusal:
                # What was made before the restart still goes out; the rest is named.
                for slot in waiting:
                    slot.runnable, slot.failure = False, str(refusal)
                    await self.store.mark_failed(slot.user_turn.id, "not admitted")
        return await self._run(slots)

    # ------------------------------------------------------------------ the edits
    async def _run(self, slots: list[_Slot]) -> InboxStatus:
        runnable = [slot for slot in slots if slot.runnable]
        if runnable:
            await safe_progress(self.work.channel, Progress.WORKING)
        reference: Turn | None = None
        if self.request.consistent:
            reference = next((s.answer for s in slots if s.answer and s.answer.images), None)
            while reference is None and runnable:
                lead = runnable.pop(0)
                await self._edit(lead, None)
                if lead.answer is not None and lead.answer.images:
                    reference = lead.answer
        await asyncio.gather(*(self._edit(slot, reference) for slot in runnable))
        return await self._deliver(slots)

    async def _edit(self, slot: _Slot, reference: Turn | None) -> None:
        """One picture's model call; its outcome is kept on the slot, never raised (but
        for a lost claim: then the whole event belongs to another process)."""
        entry_id = self.work.entry.id

        async def starting() -> None:
            if not await self.store.inbox_mark_linked_call_started(
                    entry_id, slot.user_turn.id, owner=self.work.owner):
                raise ClaimLost(f"message {self.work.event.message_id} was taken over")

        slot.runnable = False
        try:
            parts = await self._reference_parts(reference)
            result = await self.turns.generate(self.work, slot.user_turn, starting=starting,
                                                event_id=None, reference=parts)
        except ClaimLost:
            raise
        except Exception:
            # The other pictures go on: this one is named as failed, its turn kept.
            log.exception("linked edit %d of message %s failed", slot.position + 1,
                          self.work.event.message_id)
            slot.failure = _(GENERIC_FAILURE)
            try:
                await self.store.mark_failed(slot.user_turn.id, "error")
            except Exception:
                log.exception("could not record the failure")
            return
        if isinstance(result, ModelError):
            slot.failure = failure_message(result)
        else:
            slot.answer = result.turn

    async def _reference_parts(self, reference: Turn | None) -> tuple[Part, ...]:
        if reference is None:
            return ()
        image = reference.images[0]
        data = await self.store.image_bytes(image.sha256)
        return (Part(text=STYLE_REFERENCE), Part(image=Blob(image.mime_type, data)))

    # ------------------------------------------------------------------ delivery
    async def _deliver(self, slots: list[_Slot]) -> InboxStatus:
        """Every new result in one message, in the pictures' order, id i linked to
        picture i; failures named in the same message."""
        pending = [s for s in slots
                   if s.answer is not None and s.answer.status is TurnStatus.UNDELIVERED]
        async with self.delivery.in_hand(self.work.event.chat,  # pictures are read only now
                                         messages=len(pending)):
            return await self._send(slots, pending)

    async def _send(self, slots: list[_Slot], pending: list[_Slot]) -> InboxStatus:
        work, channel = self.work, self.work.channel
        for slot in pending:
            assert slot.answer is not None
            slot.outputs = await self.delivery.stored_outputs(slot.answer)
        pictured = [s for s in pending if s.outputs]
        lines = _result_lines(slots, pending)
        delivered_before = any(s.answer is not None and s.answer.status is TurnStatus.OK
                               for s in slots)
        if not lines:
            return InboxStatus.DONE  # everything was delivered before a restart
        chosen = await self.turns.choices.settings_for(work)
        outputs: list[OutputImage] = []
        for slot in pictured:
            assert slot.answer is not None
            # each answer signed with its own ingredients (its own picture was the input)
            outputs += (await self.delivery.provenance.outgoing(slot.answer, slot.outputs,
                                                             chosen)).images
        try:
            ids = await self.delivery.send_with_retries(channel, outputs, "\n".join(lines),
                                                      as_files=chosen.send_originals)
        except Exception as exc:
            log.warning("could not deliver the linked edits of message %s: %s: %s",
                        work.event.message_id, type(exc).__name__, str(exc)[:200])
            metrics.UNDELIVERED.labels(work.event.platform).inc()
            await safe_progress(channel, Progress.FAILED)
            if pending:
                versions = ", ".join(f"v{s.answer.version}" for s in pending if s.answer)
                await self._tell(pending[-1], _(NOT_SENT).format(
                    versions=versions, resend=f"{work.event.command_prefix}resend"))
            return InboxStatus.DONE if pending or delivered_before else InboxStatus.FAILED
        cursor = 0
        for slot in pending:
            assert slot.answer is not None
            count = len(slot.outputs)  # send_images: one id per picture, in their order
            mine, cursor = ids[cursor:cursor + count], cursor + count
            await self.store.mark_delivered(slot.answer, chat=work.event.chat,
                                            message_ids=mine, move_head=slot is pending[-1])
        if not outputs:
            # Words alone went out: a reply to them continues the first answer, or retries
            # the first picture that failed.
            first = pending[0].answer if pending else next(
                (s.user_turn for s in slots if s.failure), None)
            if first is not None:
                for message_id in ids:
                    await self.store.link_message(work.event.chat, message_id, first)
        metrics.IMAGES_OUT.labels(work.event.platform).inc(len(outputs))
        succeeded = bool(pending) or delivered_before
        await safe_progress(channel, Progress.DONE if succeeded else Progress.FAILED)
        return InboxStatus.DONE if succeeded else InboxStatus.FAILED

    async def _tell(self, slot: _Slot, text: str) -> None:
        turn = slot.answer or slot.user_turn
        for message_id in await safe_send(self.work.channel, text):
            await self.store.link_message(self.work.event.chat, message_id, turn)


def _result_lines(slots: list[_Slot], pending: list[_Slot]) -> list[str]:
    """The words that go with the results: which versions came out, what the model said
    instead of a picture, and which pictures failed and why."""
    total = len(slots)
    lines = []
    pictured = [s for s in pending if s.outputs]
    if pictured:
        versions = ", ".join(f"v{s.answer.version}" for s in pictured if s.answer)
        lines.append(_(RESULTS).format(versions=versions))
    for slot in pending:
        if not slot.outputs and slot.answer is not None:
            lines.append(_(PICTURE_SAID).format(number=slot.position + 1, total=total,
                                                text=slot.answer.text))
    for slot in slots:
        if slot.failure:
            lines.append(_(PICTURE_FAILED).format(number=slot.position + 1, total=total,
                                                  reason=slot.failure))
    return lines


__all__ = ["EachRequest", "parse_each", "run_linked"]
