"""What every image model speaks: parts, contents, results and failures.

The shapes mirror Gemini's ``contents``/``parts`` because that is the richest of the
APIs we talk to; a model turn's parts are kept *verbatim* (``extra`` carries any field
we do not model, ``thought_signature`` is never altered) so they can be replayed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bot.kit.i18n import _


@dataclass(frozen=True)
class Blob:
    mime_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    async def read(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class StoredBlob:
    """A stored picture that a request names without holding its bytes.

    The model client reads it (``load``) only while the request goes out, and again for
    a retry. A turn spends seconds waiting for the model; with hundreds of turns waiting
    at once, the pictures of their requests held in memory came to gigabytes.
    """

    mime_type: str
    size: int
    load: Callable[[], Awaitable[bytes]] = field(compare=False, repr=False)

    async def read(self) -> bytes:
        data = await self.load()
        if len(data) != self.size:  # the request's length was declared from the size
            raise ValueError(f"stored picture is {len(data)} bytes, not {self.size}")
        return data


#: a picture in a request: bytes at hand, or a stored one read as the request goes out
Picture = Blob | StoredBlob


@dataclass(frozen=True)
class Part:
    """One part of a turn: text, an inline image, or both absent (an opaque part).

    ``extra`` holds the part's other JSON fields exactly as received (camelCase keys),
    so that a replayed model turn is byte-for-byte what the service sent. A key with a
    ``provider:`` prefix (``openai:reasoning_details``) belongs to that provider's wire
    format alone: other providers leave it out of what they send.
    """

    text: str | None = None
    image: Picture | None = None
    thought: bool = False
    thought_signature: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


Role = Literal["user", "model"]


@dataclass(frozen=True)
class Content:
    role: Role
    parts: tuple[Part, ...]


class AnswerSlot:
    """A place among the answers one process reads and stores at once.

    Hundreds of calls may wait on the model together, and their answers tend to come in
    together; each one read, parsed and not yet stored holds megabytes. So a model client
    takes the slot right before it reads an answer's body (until then the answer waits on
    the socket, costing the bot nothing) and gives it back if the answer is of no use;
    the caller gives it back once the answer is stored. Both ends may call either method
    more than once: a slot is held at most once.
    """

    def __init__(self, places: asyncio.Semaphore) -> None:
        self._places = places
        self._held = False

    async def take(self) -> None:
        if not self._held:
            await self._places.acquire()
            self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._places.release()


@dataclass(frozen=True)
class GenerateRequest:
    contents: tuple[Content, ...]
    aspect_ratio: str | None = None
    image_size: str | None = None
    #: awaited once, right before the request leaves for the service (after encoding and
    #: any wait): from then on the call may be paid for, whatever happens to the bot
    on_send: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)
    #: taken before the answer is read, still held when it is returned (see AnswerSlot)
    answer_slot: AnswerSlot | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, as the service reported them.

    ``output_tokens`` is everything billed as output (text, images and thinking), so
    ``image_output_tokens``, ``text_output_tokens`` and ``thought_tokens`` break it down:
    image output is priced apart from text, which is why it is kept separately.
    """

    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    image_output_tokens: int = 0
    text_output_tokens: int = 0
    thought_tokens: int = 0


@dataclass(frozen=True)
class GenerateResult:
    """A successful answer: at least one image, or text the user should read."""

    parts: tuple[Part, ...]
    usage: Usage = Usage()
    model_version: str | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if p.text and not p.thought).strip()

    @property
    def images(self) -> list[Blob]:
        """The pictures of the answer (a model answers with bytes, never a stored one)."""
        return [p.image for p in self.parts if isinstance(p.image, Blob) and not p.thought]


class FailureKind(enum.Enum):
    REFUSED = "refused"  # safety / policy block: rephrasing may help
    NO_IMAGE = "no_image"  # the model answered but made no picture
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # 5xx, network, timeout after retries
    BAD_REQUEST = "bad_request"  # 4xx we must not retry
    AUTH = "auth"  # key missing, invalid or without access


class ModelError(Exception):
    """A model call that produced nothing usable, with a message fit for the user.

    ``user_message`` is short, human and free of secrets, in the user's language;
    ``detail`` is for logs.
    """

    def __init__(
        self,
        kind: FailureKind,
        user_message: str,
        *,
        detail: str = "",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(detail or user_message)
        self.kind = kind
        # A marked constant (``N_``) is translated here, in the language of the event
        # being handled; text already translated or formatted has no entry and stays.
        self.user_message = _(user_message)
        self.detail = detail
        self.text = text
        self.usage = usage


class ImageModel(Protocol):
    """An image model the engine can call; one method does the work."""

    name: str
    #: how many input images a request may carry before quality suffers
    max_input_images: int

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """Answer the request or raise :class:`ModelError`; await ``request.on_send``
        right before anything is sent (a model that cannot be paid for may at once)."""
        ...

    async def aclose(self) -> None: ...


def image_cap_for(model: str) -> int:
    """Input images a model handles well (DESIGN: 2.5 Flash ≤3, 3 Pro up to 14)."""
    name = model.lower()
    if "gemini-2.5" in name or "gemini-2.0" in name:
        return 3
    return 14
