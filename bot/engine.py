"""One message end to end: routing, commands, a model turn, replies and links.

Adapters hand every message here with a :class:`Channel` bound to it. The engine works
out which thread and which turn the message continues, runs the model call under that
thread's lock (so turns of one thread stay in arrival order while other threads proceed),
stores both turns, and links every platform message to its turn so replies find it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import bot.images as imaging
from bot import metrics
from bot.commands import COMMANDS, Command, parse_command
from bot.config import Settings
from bot.context import BuiltContext, ContextPolicy, build_context
from bot.events import (
    Channel,
    ChatKey,
    Incoming,
    InputImage,
    InputRefused,
    OutputImage,
    Progress,
)
from bot.models.base import FailureKind, GenerateRequest, ImageModel, ModelError
from bot.ordering import Lines, Ticket
from bot.threads import Thread, Turn, TurnStatus, format_history, undo_target
from storage.sqlite import AsyncStore, NewImage, NewPart, UsageSummary

log = logging.getLogger(__name__)

MAX_UNDO = 50
GENERIC_FAILURE = "Sorry, something went wrong on my side. Please try again in a moment."


@dataclass(frozen=True)
class Target:
    """Where a message goes: a thread, and the turn it continues from.

    ``follow_head`` means "whatever the head is once our turn comes", so two messages
    queued in one thread build on each other instead of both on the old head.
    """

    thread: Thread
    parent_id: int | None
    follow_head: bool
    carried: tuple[InputImage, ...] = ()


class UserFacingError(Exception):
    """Stop handling this message and tell the user why (short, no internals)."""


class Engine:
    def __init__(self, store: AsyncStore, model: ImageModel, settings: Settings) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        # Arrival order per chat, then per thread: see bot/ordering.py.
        self._intake = Lines()
        self._threads = Lines()

    # ------------------------------------------------------------------ public API
    async def handle(self, incoming: Incoming, channel: Channel) -> None:
        """Answer one message; never raises (a failure here must not stop an adapter)."""
        try:
            await self._handle(incoming, channel)
        except (UserFacingError, InputRefused) as exc:
            await self._safe_send(channel, str(exc))
        except Exception:
            log.exception("failed to handle message %s in %s", incoming.message_id,
                          incoming.chat)
            await self._safe_send(channel, GENERIC_FAILURE)

    async def claim_event(self, platform: str, event_key: str) -> bool:
        return await self.store.run(self.store.sync.claim_event, platform, event_key)

    async def is_bot_message(self, chat: ChatKey, message_id: str) -> bool:
        turn = await self.store.run(self.store.sync.linked_turn, chat, message_id)
        return turn is not None and turn.is_model

    async def has_thread(self, chat: ChatKey, thread_hint: str) -> bool:
        thread = await self.store.run(self.store.sync.thread_by_key, chat, thread_hint)
        return thread is not None

    def help_text(self, prefix: str = "/") -> str:
        lines = [
            "I edit pictures with Google's Gemini image model.",
            "• Send a photo with what to change (\"make it watercolor\"), or describe a new "
            "picture.",
            "• Reply to my image to keep editing it (\"now add a hat\"); reply to an older "
            "version to branch from it.",
            "• Send several photos at once to combine them.",
            "",
            "Commands:",
        ]
        lines += [f"{prefix}{c.usage.lstrip('/')} — {c.description}" for c in COMMANDS]
        return "\n".join(lines)

    # ------------------------------------------------------------------ routing
    async def _handle(self, incoming: Incoming, channel: Channel) -> None:
        # Everything up to taking a place in the thread's line happens in the chat's
        # arrival order, so a quick text reply cannot overtake the photo sent before it.
        intake = self._intake.reserve(incoming.chat)
        async with intake:
            command = parse_command(incoming.text)
            metrics.MESSAGES.labels(incoming.platform, "command" if command else "edit").inc()
            if command is not None:
                await self._command(command, incoming, channel, intake)
                return
            text = incoming.text.strip()
            limit = self.settings.chatbrush_max_prompt_chars
            if len(text) > limit:
                metrics.REJECTED_INPUTS.labels(incoming.platform).inc()
                raise UserFacingError(
                    f"That message is too long ({len(text):,} characters); please keep it "
                    f"under {limit:,}."
                )
            # Validate what the user sent before any thread is created for it.
            own_images = await self._prepare_images(incoming, incoming.images)
            target = await self._route(incoming)
            if target is None:
                return  # a group message not meant for us (adapters normally filter these)
            prepared = [*await self._prepare_images(incoming, target.carried), *own_images]
            if not text and not prepared:
                raise UserFacingError("Tell me what to change, or send a photo.")
            queued = self._threads.busy(target.thread.id)
            ticket = self._threads.reserve(target.thread.id)
        try:
            if queued:
                metrics.QUEUED.labels(incoming.platform).inc()
                await self._safe_progress(channel, Progress.QUEUED)
            await self._turn(incoming, channel, target, text, prepared, ticket)
        finally:
            ticket.release()

    async def _route(self, incoming: Incoming) -> Target | None:
        db = self.store.sync
        if incoming.reply_to:
            linked = await self.store.run(db.linked_turn, incoming.chat, incoming.reply_to)
            if linked is not None:
                thread = await self.store.run(db.get_thread, linked.thread_id)
                if thread is not None:
                    if linked.status is TurnStatus.FAILED:
                        return Target(thread, linked.parent_id, False)
                    return Target(thread, linked.id, False)
            if incoming.reply_to_images is not None:
                loaded = tuple(await incoming.reply_to_images())
                if loaded:
                    thread = await self._new_thread(incoming)
                    return Target(thread, None, False, carried=loaded)
        if incoming.thread_hint:
            thread = await self.store.run(db.thread_by_key, incoming.chat, incoming.thread_hint)
            if thread is None:
                thread = await self._new_thread(incoming, external_key=incoming.thread_hint)
            return Target(thread, thread.head_id, True)
        if incoming.is_private:
            thread = await self.store.run(db.current_thread, incoming.chat)
            if thread is None:
                thread = await self._new_thread(incoming)
            return Target(thread, thread.head_id, True)
        if not incoming.addressed:
            return None
        return Target(await self._new_thread(incoming), None, False)

    async def _new_thread(self, incoming: Incoming, external_key: str | None = None) -> Thread:
        db = self.store.sync
        thread = await self.store.run(
            db.create_thread, incoming.chat, external_key=external_key,
            created_by=incoming.sender.id,
        )
        if incoming.is_private:
            await self.store.run(db.set_current_thread, incoming.chat, thread.id)
        return thread

    async def _prepare_images(self, incoming: Incoming, raw: Sequence[InputImage]
                              ) -> list[imaging.PreparedImage]:
        prepared = []
        for index, image in enumerate(raw, start=1):
            try:
                prepared.append(await imaging.prepare_input_async(
                    image.data,
                    max_side=self.settings.chatbrush_max_side,
                    max_bytes=self.settings.chatbrush_max_upload_bytes,
                    max_pixels=self.settings.chatbrush_max_pixels,
                ))
            except imaging.ImageRejected as exc:
                metrics.REJECTED_INPUTS.labels(incoming.platform).inc()
                which = f"Image {index} of {len(raw)}: " if len(raw) > 1 else ""
                raise UserFacingError(f"{which}{exc.user_message}") from None
        return prepared

    # ------------------------------------------------------------------ one turn
    async def _turn(
        self,
        incoming: Incoming,
        channel: Channel,
        target: Target,
        text: str,
        prepared: list[imaging.PreparedImage],
        ticket: Ticket,
    ) -> None:
        db = self.store.sync
        thread_id = target.thread.id
        async with ticket:
            parent_id = target.parent_id
            if target.follow_head:
                current = await self.store.run(db.get_thread, thread_id)
                if current is None:  # reset while we waited
                    raise UserFacingError("That conversation was reset. Please send it again.")
                parent_id = current.head_id
            if not prepared and text:
                prepared = await self._retry_images(thread_id, parent_id)
            parts = [NewPart(image=NewImage(p.data, p.mime_type, p.width, p.height))
                     for p in prepared]
            if text:
                parts.append(NewPart(text=text))
            if not text:
                # A picture with no instruction: keep it as the next input, ask what to do.
                turn = await self.store.run(
                    db.add_turn, thread_id, parent_id=parent_id, role="user", parts=parts,
                    author_id=incoming.sender.id, author_name=incoming.sender.display_name,
                )
                await self.store.run(db.link_message, incoming.chat, incoming.message_id, turn)
                many = "them" if len(prepared) > 1 else "it"
                # Linked, so that replying to this question continues with the picture.
                for message_id in await self._safe_send(
                    channel, f"Got it. What should I do with {many}?"
                ):
                    await self.store.run(db.link_message, incoming.chat, message_id, turn)
                return
            user_turn = await self.store.run(
                db.add_turn, thread_id, parent_id=parent_id, role="user", parts=parts,
                author_id=incoming.sender.id, author_name=incoming.sender.display_name,
                move_head=False,
            )
            await self.store.run(db.link_message, incoming.chat, incoming.message_id, user_turn)
            await self._call_model(incoming, channel, user_turn)

    async def _retry_images(self, thread_id: int, parent_id: int | None
                            ) -> list[imaging.PreparedImage]:
        """Images of a failed attempt right here, so "try again" needs no re-upload."""
        db = self.store.sync
        for failed in await self.store.run(db.failed_children, parent_id, thread_id):
            if failed.images:
                return [
                    imaging.PreparedImage(await self.store.run(db.image_bytes, ref.sha256),
                                          ref.mime_type, ref.width, ref.height)
                    for ref in failed.images
                ]
        return []

    async def _call_model(self, incoming: Incoming, channel: Channel, user_turn: Turn) -> None:
        db = self.store.sync
        policy = ContextPolicy(
            byte_budget=self.settings.chatbrush_context_bytes,
            max_images=min(self.model.max_input_images,
                           self.settings.chatbrush_max_input_images or 14),
        )
        context: BuiltContext = await self.store.run(self._build_context, user_turn, policy)
        request = GenerateRequest(
            context.contents,
            aspect_ratio=self.settings.gemini_aspect_ratio,
            image_size=self.settings.gemini_image_size,
        )
        await self._safe_progress(channel, Progress.WORKING)
        metrics.REQUEST_BYTES.observe(context.request_bytes)
        started = time.monotonic()
        try:
            result = await self.model.generate(request)
            outputs = [await imaging.inspect_output_async(b.data, b.mime_type)
                       for b in result.images]
        except (ModelError, imaging.ImageRejected) as exc:
            error = exc if isinstance(exc, ModelError) else ModelError(
                FailureKind.NO_IMAGE, "The model sent back an image I could not read. "
                "Please try again.", detail=str(exc))
            self._observe_call(started, error.kind.value)
            await self._fail(incoming, channel, user_turn, error, context)
            return
        self._observe_call(started, "ok")
        metrics.IMAGES_OUT.labels(incoming.platform).inc(len(outputs))
        parts: list[NewPart] = []
        outputs_iter = iter(outputs)
        for part in result.parts:
            image: NewImage | None = None
            if part.image is not None and not part.thought:
                out = next(outputs_iter)
                # Stored exactly as the model sent it (it is replayed verbatim); what the
                # chat was shown may be a converted copy, remade on resend.
                image = NewImage(part.image.data, part.image.mime_type, out.width, out.height)
            elif part.image is not None:
                image = NewImage(part.image.data, part.image.mime_type, 0, 0)
            parts.append(NewPart(part.text, image, part.thought, part.thought_signature,
                                 part.extra))
        model_turn = await self.store.run(
            db.add_turn, user_turn.thread_id, parent_id=user_turn.id, role="model", parts=parts,
            author_id="bot", author_name=self.model.name,
        )
        await self.store.run(
            db.record_usage, chat=incoming.chat, user_id=incoming.sender.id,
            thread_id=user_turn.thread_id, model=self.model.name, ok=True,
            images=len(outputs), prompt_tokens=result.usage.prompt_tokens,
            output_tokens=result.usage.output_tokens, request_bytes=context.request_bytes,
        )
        caption = f"v{model_turn.version}" + (f" — {result.text}" if result.text else "")
        if context.newest_images_capped:
            caption += (f"\n(This model takes {context.images_sent} images at most; "
                        f"{context.newest_images_capped} of yours were left out.)")
        await self._deliver(channel, incoming.chat, model_turn, outputs, caption)
        await self._safe_progress(channel, Progress.DONE)

    def _observe_call(self, started: float, outcome: str) -> None:
        metrics.MODEL_SECONDS.labels(self.model.name).observe(time.monotonic() - started)
        metrics.MODEL_CALLS.labels(self.model.name, outcome).inc()

    def _build_context(self, user_turn: Turn, policy: ContextPolicy) -> BuiltContext:
        """Runs on the store's thread: reads the path and the image bytes it keeps."""
        db = self.store.sync
        path = [t for t in db.path(user_turn.id) if t.status is TurnStatus.OK]
        return build_context(path, policy, db.image_bytes)

    async def _fail(self, incoming: Incoming, channel: Channel, user_turn: Turn,
                    error: ModelError, context: BuiltContext) -> None:
        db = self.store.sync
        log.warning("model call failed in thread %s: %s (%s)", user_turn.thread_id,
                    error.kind.value, error.detail or error.user_message)
        await self.store.run(db.mark_failed, user_turn.id, error.kind.value)
        usage = error.usage
        await self.store.run(
            db.record_usage, chat=incoming.chat, user_id=incoming.sender.id,
            thread_id=user_turn.thread_id, model=self.model.name, ok=False,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            request_bytes=context.request_bytes,
        )
        await self._safe_progress(channel, Progress.FAILED)
        message = error.user_message
        if error.text:
            message += f"\n\nThe model said: {error.text}"
        await self._safe_send(channel, message)

    async def _deliver(self, channel: Channel, chat: ChatKey, turn: Turn,
                       outputs: Sequence[OutputImage], caption: str) -> None:
        ids = (await channel.send_images(outputs, caption) if outputs
               else await channel.send_text(caption))
        for message_id in ids:
            await self.store.run(self.store.sync.link_message, chat, message_id, turn)

    # ------------------------------------------------------------------ commands
    async def _command(self, command: Command, incoming: Incoming, channel: Channel,
                       intake: Ticket) -> None:
        # undo and reset change a thread: they take their place in its line first.
        if command.name == "undo":
            await self._cmd_undo(command, incoming, channel, intake)
            return
        if command.name == "reset":
            await self._cmd_reset(command, incoming, channel, intake)
            return
        intake.release()  # the rest only read, or start something new
        handler = {
            "help": self._cmd_help,
            "new": self._cmd_new,
            "history": self._cmd_history,
            "usage": self._cmd_usage,
            "stats": self._cmd_stats,
            "settings": self._cmd_settings,
        }.get(command.name)
        if handler is None:
            p = incoming.command_prefix
            raise UserFacingError(f"I don't know {p}{command.name}. Try {p}help.")
        await handler(command, incoming, channel)

    async def _cmd_help(self, command: Command, incoming: Incoming, channel: Channel) -> None:
        await self._safe_send(channel, self.help_text(incoming.command_prefix))

    async def _cmd_new(self, command: Command, incoming: Incoming, channel: Channel) -> None:
        if not incoming.is_private or incoming.thread_hint:
            raise UserFacingError(
                "Here every message that mentions me starts a fresh conversation; reply to "
                "one of my images to keep editing it."
            )
        await self._new_thread(incoming)
        await self._safe_send(channel, "Started a fresh conversation. Send a photo or "
                                       "describe a picture.")

    async def _existing_thread(self, incoming: Incoming) -> Thread:
        db = self.store.sync
        thread: Thread | None = None
        if incoming.reply_to:
            linked = await self.store.run(db.linked_turn, incoming.chat, incoming.reply_to)
            if linked is not None:
                thread = await self.store.run(db.get_thread, linked.thread_id)
        if thread is None and incoming.thread_hint:
            thread = await self.store.run(db.thread_by_key, incoming.chat, incoming.thread_hint)
        if thread is None and incoming.is_private:
            thread = await self.store.run(db.current_thread, incoming.chat)
        if thread is None:
            if incoming.is_private:
                raise UserFacingError("There is no conversation yet. Send a photo to start.")
            raise UserFacingError("Reply to one of my images with that command so I know "
                                  "which conversation you mean.")
        return thread

    async def _cmd_undo(self, command: Command, incoming: Incoming, channel: Channel,
                        intake: Ticket) -> None:
        arg = command.args.split()[0] if command.args else "1"
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_UNDO:
            undo = f"{incoming.command_prefix}undo"
            raise UserFacingError(f"Use {undo} or {undo} N with N from 1 to {MAX_UNDO}.")
        thread = await self._existing_thread(incoming)
        db = self.store.sync
        ticket = self._threads.reserve(thread.id)
        intake.release()
        async with ticket:
            current = await self.store.run(db.get_thread, thread.id)
            if current is None:
                raise UserFacingError("That conversation was reset.")
            path = [t for t in await self.store.run(db.path, current.head_id)
                    if t.status is TurnStatus.OK]
            target, steps = undo_target(path, int(arg))
            if steps == 0:
                raise UserFacingError("Nothing to undo yet.")
            await self.store.run(db.set_head, thread.id, target.id if target else None)
        undone = f"Undid {steps} version{'s' if steps > 1 else ''}."
        if target is None:
            await self._safe_send(channel, f"{undone} Back to the start: send a photo or a "
                                           "prompt to begin again.")
            return
        label = f"Back to v{target.version}." if target.is_model else "Back to the original."
        if not target.images:
            await self._safe_send(channel, f"{undone} {label}")
            return
        outputs = [await imaging.inspect_output_async(
                       await self.store.run(db.image_bytes, ref.sha256), ref.mime_type)
                   for ref in target.images]
        await self._deliver(channel, incoming.chat, target, outputs,
                            f"{undone} {label} Reply to continue from here.")

    async def _cmd_history(self, command: Command, incoming: Incoming, channel: Channel
                           ) -> None:
        thread = await self._existing_thread(incoming)
        turns = await self.store.run(self.store.sync.turns_of, thread.id)
        await self._safe_send(channel, format_history(turns, thread.head_id))

    async def _cmd_reset(self, command: Command, incoming: Incoming, channel: Channel,
                         intake: Ticket) -> None:
        if not incoming.is_private and not await self._is_admin(incoming, channel):
            raise UserFacingError("Sorry, only chat admins can reset a conversation here.")
        thread = await self._existing_thread(incoming)
        ticket = self._threads.reserve(thread.id)
        intake.release()
        async with ticket:
            await self.store.run(self.store.sync.delete_thread, thread.id)
        await self._safe_send(channel, "Done: I forgot that conversation. Send a photo to "
                                       "start again.")

    async def _cmd_usage(self, command: Command, incoming: Incoming, channel: Channel) -> None:
        db = self.store.sync
        mine = await self.store.run(db.usage, platform=incoming.platform,
                                    chat_id=incoming.chat.chat_id, user_id=incoming.sender.id)
        chat = await self.store.run(db.usage, platform=incoming.platform,
                                    chat_id=incoming.chat.chat_id)

        def line(who: str, u: UsageSummary) -> str:
            return (f"{who}: {u.calls} model calls ({u.failed} failed), {u.images} images, "
                    f"{u.prompt_tokens + u.output_tokens:,} tokens "
                    f"({u.prompt_tokens:,} in, {u.output_tokens:,} out)")

        await self._safe_send(channel, f"{line('You, in this chat', mine)}\n"
                                       f"{line('This chat', chat)}")

    async def _cmd_stats(self, command: Command, incoming: Incoming, channel: Channel) -> None:
        if not await self._is_admin(incoming, channel):
            raise UserFacingError("Sorry, that command is for admins.")
        stats = await self.store.run(self.store.sync.stats)
        lines = [f"Model: {self.model.name}"] + [f"{k}: {v:,}" for k, v in stats.items()]
        await self._safe_send(channel, "\n".join(lines))

    async def _cmd_settings(self, command: Command, incoming: Incoming, channel: Channel
                            ) -> None:
        if not await self._is_admin(incoming, channel):
            raise UserFacingError("Sorry, that command is for admins.")
        s = self.settings
        lines = [
            f"Model: {self.model.name} (up to {self.model.max_input_images} input images)",
            f"Image size: {s.gemini_image_size or 'model default'}; aspect ratio: "
            f"{s.gemini_aspect_ratio or 'model default'}",
            f"Inputs downscaled to {s.chatbrush_max_side}px; request budget "
            f"{s.chatbrush_context_bytes / 1e6:.1f} MB",
            f"Prompt limit: {s.chatbrush_max_prompt_chars:,} characters; upload limit "
            f"{s.chatbrush_max_upload_bytes / 1e6:.0f} MB",
        ]
        await self._safe_send(channel, "\n".join(lines))

    async def _is_admin(self, incoming: Incoming, channel: Channel) -> bool:
        if self.settings.is_global_admin(incoming.platform, incoming.sender.id):
            return True
        try:
            return await channel.is_admin(incoming.sender)
        except Exception:
            log.warning("admin check failed in %s", incoming.chat, exc_info=True)
            return False

    # ------------------------------------------------------------------ helpers
    async def _safe_send(self, channel: Channel, text: str) -> list[str]:
        try:
            return await channel.send_text(text)
        except Exception:
            log.exception("could not send a reply")
            return []

    async def _safe_progress(self, channel: Channel, state: Progress) -> None:
        try:
            await channel.progress(state)
        except Exception:
            log.warning("progress signal %s failed", state.value, exc_info=True)
