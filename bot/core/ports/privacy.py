"""The privacy port: ``/forget`` (what one person sent) and retention (idle pictures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AuthoredSummary:
    """What one person sent, counted before ``/forget`` removes it."""

    prompts: int = 0  # their turns that still hold words
    images: int = 0  # pictures in their turns
    conversations: int = 0  # threads those turns are in


@dataclass(frozen=True)
class ForgetReport:
    """What :meth:`PrivacyStore.forget_author` did."""

    turns: int = 0  # turns whose words and pictures were replaced by the placeholder
    images_erased: int = 0  # pictures no turn refers to any more, erased from storage
    events_scrubbed: int = 0  # finished inbox records emptied of their text and files


@dataclass(frozen=True)
class PurgeReport:
    """What :meth:`PrivacyStore.purge_idle_images` did."""

    threads: int = 0  # idle threads whose pictures were let go
    images_erased: int = 0  # pictures no turn refers to any more, erased from storage
    bytes_erased: int = 0  # their stored size
    answers_expired: int = 0  # undelivered answers of those threads, now given up
    bytes_reclaimed: int = 0  # by which the database shrank (0 where the backend can't say)


class PrivacyStore(Protocol):
    async def authored_summary(self, platform: str, user_id: str, *,
                               chat_id: str | None) -> AuthoredSummary:
        """What :meth:`forget_author` with the same arguments would remove."""
        ...

    async def forget_author(self, platform: str, user_id: str, *, chat_id: str | None,
                            handling: Sequence[int] = ()) -> ForgetReport:
        """Remove what ``user_id`` sent: in chat ``chat_id`` (every topic of it), or in
        every chat of ``platform`` when ``chat_id`` is None.

        Each of their user turns keeps its place in the tree (parents, versions and links
        stay, so threads remain navigable) but its parts become one text part,
        :data:`bot.core.threads.REMOVED_BY_AUTHOR`, and its author name is cleared. Pictures
        no turn refers to any more are erased, and so are the text, attachments and name
        of their *finished* inbox events (unfinished ones are work still to do) and of the
        entries being ``handling`` (the ``/forget confirm`` message itself, finished only
        after this returns); everyone's inbox events in scope lose the platform handles
        (``file_id``) of their pictures. Erased means
        gone from the storage files too, not merely unlinked: a backend that keeps deleted
        bytes around (SQLite free pages, its WAL, picture files' blocks) must overwrite or
        truncate them before returning.
        """
        ...

    async def purge_idle_images(self, *, idle_before: float) -> PurgeReport:
        """Let go of the pictures of threads whose newest turn is older than
        ``idle_before`` (epoch seconds), and reclaim the space.

        Turns keep their image references (with the SHA-256) so exports and histories can
        say a picture was removed; a picture another thread still uses stays. Undelivered
        answers of those threads can never be sent any more: they are marked failed
        (error ``"expired"``). Erased as in :meth:`forget_author`.
        """
        ...
