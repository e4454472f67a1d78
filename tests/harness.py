"""The core as a platform adapter drives it, without a platform: a recording channel, a
platform that fetches inline bytes, and a chat that sends messages like a person would.

The only stand-ins are the two ports an adapter implements (:class:`RecordingChannel`,
:class:`RecordingPlatform`); intake, engine, store and model client are the real ones.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from PIL import Image

from bot.app.runtime import Runtime, open_runtime
from bot.core.config import Settings
from bot.core.events import (
    Attachment,
    AttachmentKind,
    ChatKey,
    Incoming,
    InputImage,
    InputRefused,
    Progress,
    Sender,
)
from bot.core.receiving import Receipt
from bot.kit.image_types import OutputImage
from bot.models.base import ImageModel
from bot.models.catalog import ModelCatalog
from bot.models.gemini import GeminiModel
from bot.provenance.credentials import INGREDIENT_SHA256_KEY
from tests.fakes.gemini import FakeGemini

ANN = Sender("7", "Ann", "ann")
BOB = Sender("8", "Bob", "bob")


def photo(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (320, 240)
          ) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def pixels(data: bytes) -> bytes:
    """A picture's decoded pixels: what went out is a copy signed with Content Credentials,
    the same picture as the one stored, in a different file."""
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGBA").tobytes()


def manifest_of(data: bytes, mime_type: str = "image/png") -> dict[str, Any]:
    """The active Content Credentials manifest of a picture, read by ``c2pa.Reader``
    offline; its ``validation_state`` is added (``Valid`` for an unaltered file)."""
    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False,
                                                 "ocsp_fetch": False}})
    with c2pa.Reader(mime_type, io.BytesIO(data), context=context) as reader:
        manifest = reader.get_active_manifest()
        assert manifest is not None, "the picture carries no Content Credentials"
        plain: dict[str, Any] = json.loads(json.dumps(manifest))
        plain["validation_state"] = reader.get_validation_state()
        return plain


def ingredients_of(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(relationship, SHA-256 of the input's bytes) of every ingredient, in order."""
    return [(i["relationship"], i["metadata"][INGREDIENT_SHA256_KEY])
            for i in manifest.get("ingredients") or []]


def software_agents(manifest: dict[str, Any]) -> list[str]:
    """The models the manifest's actions name."""
    return [a["softwareAgent"]["name"]
            for assertion in manifest["assertions"] if assertion["label"] == "c2pa.actions.v2"
            for a in assertion["data"]["actions"] if "softwareAgent" in a]


@dataclass
class Sent:
    kind: str  # "text", "images" or "file"
    text: str | None
    images: list[OutputImage]
    ids: list[str]
    #: pictures sent as files (documents), as they are, not as recompressed photos
    as_files: bool = False
    #: a file's name and bytes (``kind == "file"``)
    file: tuple[str, bytes] | None = None


@dataclass
class SendGate:
    """Holds every chat's pictures at the platform's door until opened, as a flood limit
    does in a burst, and counts the sends waiting there."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    most_waiting: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def pass_through(self) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        self._changed.set()
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1

    async def wait_for_waiting(self, count: int, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while self.waiting < count:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class RecordingChannel:
    """A chat as a user sees it: messages in order, each with the ids the service gave.

    ``fail_sends`` makes the next sends of pictures fail, as a flaky platform would.
    """

    admins: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    progress_log: list[Progress] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [1000])
    fail_sends: int = 0
    failed_sends: int = 0
    _sent_more: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    max_file_bytes: int = 50_000_000
    gate: SendGate | None = None

    def _ids(self, n: int) -> list[str]:
        ids = [str(self.counter[0] + i) for i in range(n)]
        self.counter[0] += n
        return ids

    async def send_text(self, text: str) -> list[str]:
        self.sent.append(Sent("text", text, [], ids := self._ids(1)))
        self._sent_more.set()
        return ids

    async def wait_for_text(self, fragment: str, within: float = 10.0) -> str:
        """The first text message containing ``fragment``, once it has been sent."""
        async with asyncio.timeout(within):
            while True:
                found = next((t for t in self.texts() if fragment in t), None)
                if found is not None:
                    return found
                self._sent_more.clear()
                await self._sent_more.wait()

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None,
                          *, as_files: bool = False) -> list[str]:
        if self.fail_sends > 0:
            self.fail_sends -= 1
            self.failed_sends += 1
            raise ConnectionError("the platform answered 502 Bad Gateway")
        if self.gate is not None:
            await self.gate.pass_through()
        self.sent.append(Sent("images", caption, list(images), ids := self._ids(len(images)),
                              as_files=as_files))
        return ids

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        self.sent.append(Sent("file", caption, [], ids := self._ids(1), file=(filename, data)))
        return ids

    async def progress(self, state: Progress) -> None:
        self.progress_log.append(state)

    async def is_admin(self, sender: Sender) -> bool:
        return sender.id in self.admins

    @property
    def last(self) -> Sent:
        return self.sent[-1]

    def texts(self) -> list[str]:
        return [s.text or "" for s in self.sent]


class RecordingPlatform:
    """One :class:`RecordingChannel` per chat; attachments carry their bytes inline, and
    an attachment whose ``ref`` is ``"refuse"`` cannot be downloaded."""

    def __init__(self, name: str = "telegram") -> None:
        self.name = name
        self.channels: dict[ChatKey, RecordingChannel] = {}
        #: what the platform would say of a person's app language, by user id
        self.languages: dict[str, str] = {}
        #: set: pictures wait at this gate (see hold_pictures)
        self.gate: SendGate | None = None

    def channel(self, event: Incoming) -> RecordingChannel:
        return self.channels.setdefault(event.chat, RecordingChannel(gate=self.gate))

    def hold_pictures(self) -> SendGate:
        """From now on, pictures sent in chats not seen yet wait until the gate opens."""
        self.gate = SendGate()
        return self.gate

    async def language_of(self, sender: Sender) -> str | None:
        return self.languages.get(sender.id)

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        if attachment.ref == "refuse":
            raise InputRefused("That file is 30 MB; bots can download 20 MB at most.")
        return [InputImage(attachment.data or b"", attachment.mime_type, attachment.filename)]


def image_attachments(images: Sequence[bytes]) -> tuple[Attachment, ...]:
    return tuple(Attachment(AttachmentKind.IMAGE, ref=f"file-{i}", size=len(data), data=data)
                 for i, data in enumerate(images))


class Chat:
    """Sends messages like a person would, numbering them like the platform."""

    def __init__(self, runtime: Runtime, platform: RecordingPlatform, key: ChatKey, *,
                 private: bool) -> None:
        self.runtime = runtime
        self.key = key
        self.private = private
        self.channel = platform.channels.setdefault(key, RecordingChannel(gate=platform.gate))
        self.next_id = 1

    def event(self, text: str = "", *images: bytes, sender: Sender = ANN,
              reply_to: str | None = None, reply_images: Sequence[bytes] | None = None,
              thread_hint: str | None = None, **fields: Any) -> Incoming:
        message_id = str(self.next_id)
        self.next_id += 1
        fields.setdefault("reply_attachments", image_attachments(reply_images or ()))
        fields.setdefault("is_private", self.private)
        fields.setdefault("attachments", image_attachments(images))
        return Incoming(
            chat=self.key, message_id=message_id, sender=sender, text=text,
            reply_to=reply_to, thread_hint=thread_hint, **fields,
        )

    async def send(self, *args: Any, **kwargs: Any) -> Receipt | None:
        """Hand a message to the intake; returns once it is stored (not answered)."""
        return await self.runtime.intake.receive(self.event(*args, **kwargs))

    async def say(self, *args: Any, **kwargs: Any) -> Sent:
        """Send a message and wait for its answer."""
        before = len(self.channel.sent)
        receipt = await self.send(*args, **kwargs)
        assert receipt is not None, "the message was not taken"
        await self.runtime.intake.wait(receipt)
        assert len(self.channel.sent) > before, "the bot answered nothing"
        return self.channel.last


#: tests of other things send faster than one person may by default (tests/test_budgets.py
#: and the flood tests of each platform keep the defaults)
FLOOD_DEFAULTS_LIFTED = {"chatbrush_user_per_minute": "none",
                         "chatbrush_calls_per_person": "none",
                         "chatbrush_calls_per_chat": "none"}


def settings_for(tmp_path: Path, fake: FakeGemini, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "gemini_api_key": "test-gemini-key",
        "gemini_base_url": fake.base_url,
        "chatbrush_db": str(tmp_path / "bot.db"),
        "gemini_retry_budget": 5.0,
        "gemini_timeout": 5.0,
        "chatbrush_delivery_backoff": 0.01,
        "telegram_album_debounce": 0.05,
        **FLOOD_DEFAULTS_LIFTED,
    }
    values.update(overrides)
    return Settings(**values)


def fast_model(settings: Settings) -> GeminiModel:
    model = GeminiModel.from_settings(settings)
    model.backoff_base = 0.01
    model.jitter = 0.0
    return model


@asynccontextmanager
async def running_bot(
    settings: Settings,
    platform: RecordingPlatform,
    *,
    model: ImageModel | Callable[[Settings], ImageModel] = fast_model,
    catalog: bool = False,
) -> AsyncIterator[Runtime]:
    """Store, model, engine and intake as ``chatbrush run`` builds them, processing;
    with ``catalog``, chats may choose among the models of ``CHATBRUSH_MODELS``."""
    chosen = model(settings) if callable(model) else model
    models = ModelCatalog.from_settings(settings) if catalog else None
    async with open_runtime(settings, model=chosen, catalog=models) as runtime:
        runtime.intake.register(platform)
        await runtime.intake.start()
        yield runtime
