"""Retention: pictures of conversations nobody touched for ``CHATBRUSH_RETENTION_DAYS`` are
removed, in the background, and the space is reclaimed (``chatbrush purge`` on demand).

What goes is the picture bytes; the conversation stays — its prompts, who asked, the
versions and their SHA-256 — so ``/history`` and ``/export`` still tell the story and say
which pictures were removed. A later message in such a conversation works with what is
left: the model is never sent a picture that is gone (a short marker takes its place),
and a reply to a picture that is gone asks for it again instead of inventing a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from bot.core.errors import UserFacingError
from bot.core.ports.images import ImageStore
from bot.core.ports.privacy import PrivacyStore, PurgeReport
from bot.core.threads import Turn
from bot.kit.formatting import readable_size
from bot.kit.i18n import N_, _
from bot.models.request_context import edited_turn, without_removed_images

log = logging.getLogger(__name__)

DAY = 86_400.0
#: how often the background purge looks for idle conversations
INTERVAL_SECONDS = 3600.0
#: the first look waits a little, so a restart with a backlog answers people first
FIRST_RUN_DELAY = 60.0

PICTURE_GONE = N_("The picture you are replying to is no longer stored (old pictures are "
                  "removed after a while). Send it again to keep editing it.")


def cutoff(days: float, *, now: float | None = None) -> float:
    """The moment before which a conversation counts as idle."""
    return (time.time() if now is None else now) - days * DAY


async def purge(store: PrivacyStore, *, days: float, now: float | None = None) -> PurgeReport:
    """Remove the pictures of conversations idle for more than ``days``; log what went."""
    before = cutoff(days, now=now)
    report = await store.purge_idle_images(idle_before=before)
    if report.threads:
        log.info("retention: %s", describe(report))
    else:
        log.debug("retention: no conversation idle since %s", when(before))
    return report


def describe(report: PurgeReport) -> str:
    """One line for operators (the log, ``chatbrush purge``)."""
    line = (f"removed {report.images_erased} picture(s), {readable_size(report.bytes_erased)}, "
            f"from {report.threads} idle conversation(s)")
    if report.answers_expired:
        line += f"; {report.answers_expired} undelivered answer(s) given up"
    if report.bytes_reclaimed:
        line += f"; the database shrank by {readable_size(report.bytes_reclaimed)}"
    return line


def when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


class RetentionTask:
    """The background purge: every ``interval`` seconds, from ``first_delay`` after start.

    ``clock`` gives the current time (tests move it forward instead of waiting days);
    ``passed`` is set after each purge, for whoever waits.
    """

    def __init__(self, store: PrivacyStore, *, days: float, interval: float = INTERVAL_SECONDS,
                 first_delay: float = FIRST_RUN_DELAY,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.days = days
        self.interval = interval
        self.first_delay = first_delay
        self.clock = clock
        self.passed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            log.info("retention: pictures of conversations idle for %g days are removed",
                     self.days)
            self._task = asyncio.create_task(self._run(), name="chatbrush-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await purge(self.store, days=self.days, now=self.clock())
            except Exception:
                log.exception("retention: the purge failed; trying again in %.0f s",
                              self.interval)
            self.passed.set()
            await asyncio.sleep(self.interval)


async def usable_path(store: ImageStore, path: Sequence[Turn]) -> list[Turn]:
    """``path`` as the model may see it: pictures whose bytes are gone become a marker.

    Raises :class:`UserFacingError` when the picture being edited is gone and the new
    message brings none of its own: the model would otherwise draw something new and
    present it as the edit.
    """
    shas: Collection[str] = {p.image.sha256 for t in path for p in t.parts if p.image}
    missing = await store.missing_images(shas) if shas else set()
    if not missing:
        return list(path)
    edited = edited_turn(path)
    if (path and not path[-1].images and edited is not None and edited.images
            and all(ref.sha256 in missing for ref in edited.images)):
        raise UserFacingError(_(PICTURE_GONE))
    return without_removed_images(path, missing)
