"""The one intake path: every event is stored before it is acknowledged, then run in order.

Adapters translate a platform payload into an :class:`~bot.core.events.Incoming` and call
:meth:`Intake.receive`, which returns only once the event is committed to the store's
inbox: that is the moment an adapter may tell its platform "received" (advance
Telegram's offset, answer a webhook 200, ``ack()`` a Slack event). Everything else that
used to be each adapter's business lives here, once: which events are ours at all, the
allow-lists and their refusal, dedupe (a message is stored once, however often it is
delivered), the ordering lane of each conversation and the "you're next" notice, album
assembly, the language each event is answered in, and a fail-safe around every turn.
(What an event is, and the checks it passes — limits on prompt length and attachments,
blocked terms, budgets — are the router's and its middleware chain's.)

A dispatcher claims events from the inbox — the oldest unfinished one of each lane, so
one conversation's turns run one at a time in arrival order while other conversations run
alongside — and hands each to the router (:mod:`bot.flow.router`). Claims are leases
renewed while the work runs; what a crash or a deploy leaves behind is claimed again and
resumed from the progress the store recorded, without a second model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import replace

from bot.core.chat_settings import ChatSettings
from bot.core.config import Settings
from bot.core.errors import ClaimLost, UserFacingError
from bot.core.events import (
    Channel,
    Incoming,
    InputRefused,
    Platform,
    Progress,
)
from bot.core.messages import QUEUED_NOTICE
from bot.core.platforms import platform_settings
from bot.core.receiving import IntakeClosed, Receipt
from bot.core.store import InboxEntry, InboxStatus, Store
from bot.core.work import Work
from bot.flow.router import Router
from bot.flow.turns import TurnService
from bot.kit.i18n import N_, _, normalize, speaking
from bot.policy.access import AccessPolicy, AdminCache, RefusalThrottle

log = logging.getLogger(__name__)

NOT_ALLOWED = N_("Sorry, this bot isn't available here.")
_SURROGATE = re.compile("[\ud800-\udfff]")
FINISHED = (InboxStatus.DONE, InboxStatus.FAILED, InboxStatus.REFUSED)
#: how long finished events are kept: re-deliveries within it are recognised
KEEP_FINISHED_SECONDS = 7 * 86400


class Intake:
    """See the module docstring. One per process; adapters register as platforms."""

    def __init__(
        self,
        store: Store,
        router: Router,
        settings: Settings,
        *,
        owner: str | None = None,
        lease_seconds: float | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = (lease_seconds if lease_seconds is not None
                              else settings.chatbrush_lease_seconds)
        self.poll_seconds = poll_seconds
        self.max_in_flight = settings.chatbrush_concurrent_turns
        #: how long a message may wait behind another before the user is told
        self.queued_notice_delay = 1.0
        self.access = AccessPolicy.from_settings(settings)
        self.refusals = RefusalThrottle()
        self._platforms: dict[str, Platform] = {}
        self._accepting = True
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._finished: dict[int, asyncio.Future[InboxStatus]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ set-up
    def register(self, platform: Platform) -> None:
        """Let events of ``platform`` be received and processed (before :meth:`start`)."""
        self._platforms[platform.name] = platform

    @property
    def admins(self) -> AdminCache:
        return self.router.admins

    @property
    def turns(self) -> TurnService:
        """The turn service behind the router (its budgets' notice limits; the console
        shows its model)."""
        return self.router.turns

    async def start(self) -> None:
        """Resume what the last run left and begin processing; returns at once."""
        if self._loops:
            return
        left = await self.store.inbox_backlog()
        if left:
            log.info("resuming %d message(s) left in the inbox by the last run", left)
        await self.store.inbox_prune(older_than=time.time() - KEEP_FINISHED_SECONDS)
        self._loops = [
            asyncio.create_task(self._dispatch(), name="chatbrush-dispatch"),
            asyncio.create_task(self._heartbeat(), name="chatbrush-leases"),
        ]

    async def stop(self, *, grace: float) -> None:
        """Take no new events, give running turns ``grace`` seconds, leave the rest stored.

        Nothing is closed under a running turn: what is still running after the grace is
        cancelled and awaited, and its event stays in the inbox to be resumed next start.
        """
        self._accepting = False
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        running = list(self._running.values())
        if running:
            log.info("waiting up to %.0fs for %d running turn(s)", grace, len(running))
            _, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                log.warning("%d turn(s) still running after %.0fs: left in the inbox for "
                            "the next start", len(pending), grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        background = list(self._background)  # notices: cosmetic, not worth a wait
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.inbox_release(self.owner)

    # ------------------------------------------------------------------ receiving
    async def receive(self, event: Incoming) -> Receipt | None:
        """Store ``event`` if it is for the bot; ``None`` if it is not (nothing to keep).

        Returns once the event is committed: only then may the platform be told it
        arrived. Raises :class:`IntakeClosed` while shutting down.
        """
        if not self._accepting:
            raise IntakeClosed("shutting down")
        if event.platform not in self._platforms:
            raise LookupError(f"no platform {event.platform!r} is registered")
        event = replace(event, text=clean_text(event.text))
        lane = await self._lane_for(event)
        if not await self._is_for_us(event, lane):
            return None
        if not self.access.allows(event):
            self._refuse(event)
            return None
        entry, new = await self.store.inbox_add(event, lane=lane)
        if new:
            self._idle.clear()
            self._wake.set()
            self._spawn(self._maybe_queued_notice(entry))
        elif entry.status in FINISHED:
            log.debug("message %s in %s was already handled", event.message_id, event.chat)
        else:
            self._wake.set()  # delivered again while unfinished: make sure it is running
        return Receipt(entry.id, new)

    async def _is_for_us(self, event: Incoming, lane: str) -> bool:
        """Private messages and messages addressed to the bot are; in a group, otherwise
        only album items (the album may be addressed as a whole) and messages in a
        conversation the bot takes part in."""
        if event.is_private or event.addressed or event.group_id is not None:
            return True
        if event.thread_hint is None:
            return False
        if await self.store.thread_by_key(event.chat, event.thread_hint) is not None:
            return True
        # the mention that starts this conversation may still be waiting in the inbox
        return await self.store.inbox_lane_active(lane)

    async def _lane_for(self, event: Incoming) -> str:
        """The ordering key: one per conversation wherever it can be known up front."""
        base = str(event.chat)
        if event.is_private:
            return base  # one person: their messages run in the order they sent them
        if event.thread_hint is not None:
            return f"{base}#{event.thread_hint}"
        if event.group_id is not None:
            return f"{base}@album:{event.group_id}"
        if event.reply_to is not None:
            turn = await self.store.linked_turn(event.chat, event.reply_to)
            if turn is not None:
                thread = await self.store.get_thread(turn.thread_id)
                if thread is not None and thread.lane:
                    return thread.lane
        return f"{base}@{event.message_id}"

    def _refuse(self, event: Incoming) -> None:
        log.info("%s: refused chat %s, user %s (not in the allowed lists)", event.platform,
                 event.chat.chat_id, event.sender.id)
        if event.addressed and self.refusals.should_say(event.chat):
            channel = self._platforms[event.platform].channel(event)
            with speaking(normalize(event.sender.language)):
                self._spawn(self._say(channel, _(NOT_ALLOWED)))

    async def _maybe_queued_notice(self, entry: InboxEntry) -> None:
        """"You're next" — only when a message really waits: one that starts within
        ``queued_notice_delay`` (behind a quick refusal, say) gets no notice, and only for
        the message right behind the running one: told once, a person sending five in a
        row is not told five times (and a burst does not spend the chat's flood limit on
        notices instead of answers)."""
        if entry.event.group_id is not None:
            return  # the rest of an album waits for its first item by design
        if await self.store.inbox_waiting_before(entry.lane, entry.id) == 0:
            return
        if self.queued_notice_delay > 0:
            await asyncio.sleep(self.queued_notice_delay)
        current = await self.store.inbox_get(entry.id)
        if current is None or current.status is not InboxStatus.RECEIVED:
            return
        if await self.store.inbox_waiting_before(entry.lane, entry.id) != 1:
            return  # started already, or further back: the one ahead was told
        event = entry.event
        if not self.turns.budgets.notices.may_notify((event.platform, event.sender.id),
                                                      (event.platform, event.chat.chat_id)):
            return  # a flooding person has been told enough this minute
        platform = self._platforms[entry.event.platform]
        channel = platform.channel(entry.event)
        language, _chosen = await self._language(entry.event, platform)
        with speaking(language):
            await self._say(channel, _(QUEUED_NOTICE))
        try:
            await channel.progress(Progress.QUEUED)
        except Exception:
            log.info("queued signal not shown in %s", entry.event.chat, exc_info=True)

    # ------------------------------------------------------------------ waiting
    async def wait(self, receipt: Receipt | int) -> InboxStatus:
        """Until the event is finished (the console answers one line at a time)."""
        entry_id = receipt if isinstance(receipt, int) else receipt.entry_id
        future = self._finished.get(entry_id)
        if future is None:
            future = self._finished[entry_id] = asyncio.get_running_loop().create_future()
            entry = await self.store.inbox_get(entry_id)
            if entry is not None and entry.status in FINISHED:
                self._resolve(entry_id, entry.status)
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Until nothing is left to do: every stored event handled (tests, benchmarks)."""
        while True:
            self._idle.clear()
            self._wake.set()  # the dispatcher looks once more, then says whether it is idle
            await self._idle.wait()
            if not self._running:
                if self._background:  # refusals and notices still on their way
                    await asyncio.gather(*list(self._background), return_exceptions=True)
                    continue
                return

    def _resolve(self, entry_id: int, status: InboxStatus) -> None:
        future = self._finished.pop(entry_id, None)
        if future is not None and not future.done():
            future.set_result(status)

    # ------------------------------------------------------------------ dispatching
    async def _dispatch(self) -> None:
        platforms = sorted(self._platforms)
        while True:
            self._wake.clear()
            free = self.max_in_flight - len(self._running)
            claimed: list[InboxEntry] = []
            if free > 0:
                try:
                    claimed = await self.store.inbox_claim(
                        self.owner, limit=min(free, 64), lease_seconds=self.lease_seconds,
                        platforms=platforms,
                    )
                except ConnectionError:
                    pass  # the database is down: the store says so, once a minute
                except Exception:
                    log.exception("could not read the inbox; trying again shortly")
            for entry in claimed:
                if entry.id not in self._running:
                    task = asyncio.create_task(self._run(entry), name=f"chatbrush-{entry.id}")
                    self._running[entry.id] = task
            if claimed and len(claimed) == min(free, 64):
                continue  # there may be more waiting right now
            if not self._running and not claimed:
                self._idle.set()
            await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        """Until this process has news (it stored an event, a turn ended), the store says
        another process has (it stored or finished one), or ``poll_seconds`` pass."""
        waits = [asyncio.ensure_future(self._wake.wait()),
                 asyncio.ensure_future(self.store.wait_for_inbox(self.poll_seconds))]
        try:
            await asyncio.wait(waits, timeout=self.poll_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _heartbeat(self) -> None:
        """Renew this process's leases while its turns run (model calls take minutes)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if self._running:
                try:
                    await self.store.inbox_renew(self.owner, lease_seconds=self.lease_seconds)
                except ConnectionError:
                    pass  # the database is down: the store says so, once a minute
                except Exception:
                    log.warning("could not renew inbox leases", exc_info=True)

    async def _run(self, entry: InboxEntry) -> None:
        ids = [entry.id]
        status = InboxStatus.FAILED
        try:
            ids, status = await self._process(entry)
        except ConnectionError as exc:  # the database is down: one line, no traceback
            log.warning("message %s in %s could not be handled (%s); it stays in the inbox",
                        entry.event.message_id, entry.event.chat, exc)
            with contextlib.suppress(Exception):
                await self.store.inbox_release(self.owner, ids)
        except Exception:
            # Not even the fail-safe could finish it (the store itself failing, say): give
            # the claim back so it is tried again, instead of renewing it forever.
            log.exception("message %s in %s could not be handled; it stays in the inbox",
                          entry.event.message_id, entry.event.chat)
            with contextlib.suppress(Exception):
                await self.store.inbox_release(self.owner, ids)
        finally:
            self._running.pop(entry.id, None)
            for entry_id in ids:
                self._resolve(entry_id, status)
            self._wake.set()

    async def _process(self, entry: InboxEntry) -> tuple[list[int], InboxStatus]:
        """One event (or album) end to end; never raises but for cancellation."""
        platform = self._platforms[entry.event.platform]
        entries = [entry]
        if entry.event.group_id is not None:
            entries = await self._collect_album(entry)
        ids = [e.id for e in entries]
        event = merge_album([e.event for e in entries]) if len(entries) > 1 else entry.event
        if not event.addressed and not event.is_private and event.thread_hint is None:
            await self.store.inbox_finish(ids, status=InboxStatus.DONE)
            return ids, InboxStatus.DONE  # an album nobody addressed to the bot
        message_ids = tuple(e.event.message_id for e in entries)
        language, chosen = await self._language(event, platform)
        with speaking(language):
            return ids, await self._handle(entry, ids, message_ids, event, platform, chosen)

    async def _handle(self, entry: InboxEntry, ids: list[int], message_ids: tuple[str, ...],
                      event: Incoming, platform: Platform,
                      chosen: ChatSettings | None) -> InboxStatus:
        channel = platform.channel(event)
        work = Work(entry=entry, entry_ids=tuple(ids), event=event, channel=channel,
                    fetch=platform.fetch, owner=self.owner, message_ids=message_ids,
                    chat_settings=chosen)
        try:
            status = await self.router.handle(work)
        except (UserFacingError, InputRefused) as exc:
            await self._say(channel, str(exc))  # in the language being spoken: the chat's
            status = InboxStatus.DONE
        except ClaimLost:
            log.warning("message %s in %s was taken over by another process after this "
                        "one's lease ran out; leaving it to that one", event.message_id,
                        event.chat)
            return InboxStatus.PROCESSING
        except ConnectionError:
            raise  # the database is down: the message stays in the inbox for later
        except Exception as exc:
            log.exception("message %s in %s failed", event.message_id, event.chat)
            await self.router.salvage(work, reason=type(exc).__name__)
            status = InboxStatus.FAILED
        try:
            await self.store.inbox_finish(ids, status=status)
        except Exception:
            log.exception("could not record message %s as finished", event.message_id)
        return status

    async def _language(self, event: Incoming, platform: Platform
                        ) -> tuple[str, ChatSettings | None]:
        """The chat's language if its admins chose one, else the sender's app language
        (from the event, or asked of the platform); English when nothing is known. With
        it the chat's settings, read once for the whole event (None if that failed)."""
        chosen: ChatSettings | None = None
        try:
            chosen = await self.router.chat_settings(event.chat)
            if chosen.language:
                return chosen.language, chosen
            return normalize(event.sender.language
                             or await platform.language_of(event.sender)), chosen
        except Exception as exc:  # a database that is down is one line, not a traceback
            log.warning("could not tell the language of %s: %s", event.sender.id, exc,
                        exc_info=not isinstance(exc, ConnectionError))
            return normalize(event.sender.language), chosen

    async def _collect_album(self, entry: InboxEntry) -> list[InboxEntry]:
        """Wait until no item of the album has arrived for the debounce, then take them
        all (they are in the same lane, so none of them can have been started)."""
        group_id = entry.event.group_id
        assert group_id is not None
        debounce = platform_settings(entry.event.platform, self.settings).album_debounce()
        while True:
            latest = await self.store.inbox_group_latest(entry.lane, group_id)
            remaining = latest + debounce - time.time()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        return await self.store.inbox_join_group(entry, self.owner,
                                                 lease_seconds=self.lease_seconds)

    # ------------------------------------------------------------------ helpers
    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_database_down_is_not_news)

    async def _say(self, channel: Channel, text: str) -> None:
        try:
            await channel.send_text(text)
        except Exception:
            log.warning("could not send a reply", exc_info=True)


def _database_down_is_not_news(task: asyncio.Future[None]) -> None:
    """A background nicety (a "you're next" notice) that met a database that is down is
    dropped without a traceback (the store logs the outage once a minute); any other
    failure is logged now rather than when the task is collected."""
    failure = None if task.cancelled() else task.exception()
    if failure is not None and not isinstance(failure, ConnectionError):
        log.error("background work failed", exc_info=failure)


# ---------------------------------------------------------------------- pure helpers
def clean_text(text: str) -> str:
    """Text any store and platform accepts: lone surrogates (from undecodable bytes or a
    broken client) become U+FFFD; control characters other than line breaks and tabs go."""
    if not text:
        return ""
    text = _SURROGATE.sub("\ufffd", text)
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def merge_album(events: Sequence[Incoming]) -> Incoming:
    """The items of one album as one turn: the captioned item speaks for all, the pictures
    keep the order they were sent in."""
    def order(e: Incoming) -> tuple[int, str]:
        return (int(e.message_id), "") if e.message_id.isdigit() else (0, e.message_id)

    ordered = sorted(events, key=order)
    primary = next((e for e in ordered if e.text.strip()), ordered[0])
    return replace(
        primary,
        attachments=tuple(a for e in ordered for a in e.attachments),
        addressed=any(e.addressed for e in ordered),
        reply_to=next((e.reply_to for e in ordered if e.reply_to), None),
        reply_attachments=next(
            (e.reply_attachments for e in ordered if e.reply_attachments), ()
        ),
    )
