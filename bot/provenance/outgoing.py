"""Content Credentials at delivery: every picture the bot sends says which model made it,
from which pictures, and (where the chat allows) from which words.

Signing happens when a picture goes out, not when it is stored: a model turn is kept byte
for byte as the model sent it, because it is replayed verbatim in later requests (Gemini
checks its signatures), and a resend is signed again. The ingredients are the pictures the
answer was made from, as the context policy sends them: the picture being edited first
(the newest version before the prompt,
:func:`bot.models.request_context.edited_turn`), then the pictures that came with the
prompt. A picture whose bytes are gone (``/forget``, retention) is left out; credentials
never cost a user their picture: any failure sends it unsigned.

A chat's ``send_originals`` asks for pictures as files, so Telegram sends documents
instead of photos it would recompress (dropping the manifest on the way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from bot.core.config import Settings
from bot.core.ports.images import ImageStore
from bot.core.ports.threads import ThreadStore
from bot.core.threads import ImageRef, Turn, TurnStatus
from bot.kit.image_types import OutputImage
from bot.models.request_context import edited_turn
from bot.policy.chat_settings import ChatSettings
from bot.provenance.credentials import ContentCredentials, Ingredient

log = logging.getLogger(__name__)

CREDENTIALS_FOLDER = "chatbrush-c2pa"


@dataclass(frozen=True)
class Outgoing:
    """Pictures ready to send, and how (``as_files``: exactly these bytes, not a photo)."""

    images: list[OutputImage]
    as_files: bool


class SigningStore(ThreadStore, ImageStore, Protocol):
    """What signing reads: the path that led to a turn, and the pictures on it."""


class Provenance:
    """Signs the pictures of model turns on their way out (see the module docstring)."""

    def __init__(self, store: SigningStore, credentials: ContentCredentials | None, *,
                 path_limit: int = 40) -> None:
        self.store = store
        self.credentials = credentials
        #: turns read back to find the picture being edited (more only if none is there)
        self.path_limit = path_limit

    async def outgoing(self, turn: Turn, outputs: Sequence[OutputImage],
                       chosen: ChatSettings) -> Outgoing:
        """``outputs`` (the pictures of ``turn``) as they should be sent in a chat that
        chose ``chosen``: a model's pictures signed, a person's own pictures as they are."""
        images = list(outputs)
        if self.credentials is not None and turn.is_model and images:
            try:
                images = await self._signed(turn, images,
                                            include_prompt=chosen.credentials_prompt)
            except Exception:
                log.warning("Content Credentials: v%s of thread %s sent unsigned",
                            turn.version, turn.thread_id, exc_info=True)
        return Outgoing(images, as_files=chosen.send_originals)

    async def _signed(self, turn: Turn, images: list[OutputImage], *, include_prompt: bool
                      ) -> list[OutputImage]:
        assert self.credentials is not None
        path = await self.store.path(turn.parent_id, limit=self.path_limit)
        if len(path) >= self.path_limit and not any(t.images for t in path[:-1]):
            path = await self.store.path(turn.parent_id)
        path = [t for t in path if t.status is TurnStatus.OK or t.id == turn.parent_id]
        refs = ingredient_refs(path)
        missing = await self.store.missing_images([ref.sha256 for ref in refs])
        inputs = [Ingredient(await self.store.image_bytes(ref.sha256), ref.mime_type,
                             known_sha256=ref.sha256)
                  for ref in refs if ref.sha256 not in missing]
        prompt = path[-1].text if path and not path[-1].is_model else None
        signed = []
        for image in images:
            data = await self.credentials.sign_async(
                image.data, image.mime_type, model=turn.author_name, inputs=inputs,
                prompt=prompt, include_prompt=include_prompt,
                title=f"v{turn.version}.{image.extension}" if turn.version else None,
            )
            signed.append(replace(image, data=data))
        return signed


def ingredient_refs(path: Sequence[Turn]) -> list[ImageRef]:
    """The pictures an answer to the last turn of ``path`` was made from, each once: the
    picture being edited first, then the ones sent with the prompt."""
    if not path:
        return []
    edited = edited_turn(path)
    refs: dict[str, ImageRef] = {}
    for ref in [*(edited.images if edited else []), *path[-1].images]:
        refs.setdefault(ref.sha256, ref)
    return list(refs.values())


def credentials_directory(settings: Settings, store_url: str) -> Path:
    """Where the self-signed pair lives: ``CHATBRUSH_C2PA_DIR``; else beside the SQLite
    file (``chatbrush-c2pa/`` for ``chatbrush.db``); else, for a database URL, in the
    working directory (a server database has no folder of ours beside it)."""
    if settings.chatbrush_c2pa_dir is not None:
        return settings.chatbrush_c2pa_dir.expanduser()
    path = store_url.removeprefix("sqlite:///") if store_url.startswith("sqlite:///") \
        else store_url
    if "://" in path or path == ":memory:":
        return Path.cwd() / CREDENTIALS_FOLDER
    database = Path(path).expanduser()
    return database.parent / f"{database.stem}-c2pa"


async def open_credentials(settings: Settings, store_url: str) -> ContentCredentials | None:
    """The signer the settings ask for (None when ``CHATBRUSH_C2PA`` is off), made off the
    event loop: the first start generates a key pair; a bad one raises SettingsError."""
    return await asyncio.to_thread(ContentCredentials.from_settings, settings,
                                   directory=credentials_directory(settings, store_url))
