"""Real threads for the version-tree, contact-sheet and export tests.

:class:`ThreadBuilder` makes :class:`~bot.threads.Turn` objects the way the engine stores
them (ids and versions in creation order, images by content hash) and keeps the image
bytes, so ``builder.load_image`` behaves like the store: bytes for a known hash,
``KeyError`` for one that was removed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

from PIL import Image

from bot.core.events import ChatKey
from bot.core.threads import ImageRef, StoredPart, Thread, Turn, TurnStatus

MODEL = "gemini-2.5-flash-image"
ANN = ("111", "Ann")
BOB = ("222", "Bob")


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64),
            fmt: str = "PNG") -> bytes:
    """A small real image, flat ``colour`` with a white band so it is not a single colour."""
    image = Image.new("RGB", size, colour)
    image.paste((255, 255, 255), (0, size[1] * 3 // 4, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


class ThreadBuilder:
    """Builds one thread turn by turn; each call returns the stored turn."""

    def __init__(self, thread_id: int = 7, start: float = 1_735_786_800.0) -> None:
        self.thread_id = thread_id
        self.turns: list[Turn] = []
        self.images: dict[str, bytes] = {}
        self._clock = start
        self._versions = 0

    def image(self, data: bytes, mime_type: str = "image/png") -> ImageRef:
        sha = hashlib.sha256(data).hexdigest()
        self.images[sha] = data
        with Image.open(io.BytesIO(data)) as decoded:
            width, height = decoded.size
        return ImageRef(sha, mime_type, width, height, len(data))

    def user(self, parent: Turn | None, text: str, *, author: tuple[str, str] = ANN,
             images: Sequence[bytes] = (), status: TurnStatus = TurnStatus.OK) -> Turn:
        parts = [StoredPart(image=self.image(data)) for data in images]
        if text:
            parts.append(StoredPart(text=text))
        return self._add(parent, "user", status, author, parts, version=None)

    def model(self, parent: Turn, *, images: Sequence[bytes] = (), text: str = "",
              model: str = MODEL, status: TurnStatus = TurnStatus.OK) -> Turn:
        parts = [StoredPart(text="thinking about it", thought=True)]
        parts += [StoredPart(image=self.image(data)) for data in images]
        if text:
            parts.append(StoredPart(text=text))
        version = None
        if status is TurnStatus.OK:
            self._versions += 1
            version = self._versions
        return self._add(parent, "model", status, ("model", model), parts, version=version)

    def thread(self, head: Turn | None) -> Thread:
        return Thread(self.thread_id, ChatKey("telegram", "-100123"), None,
                      head.id if head else None, self.turns[0].created_at if self.turns else 0.0,
                      ANN[0])

    def load_image(self, sha256: str) -> bytes:
        return self.images[sha256]

    def _add(self, parent: Turn | None, role: str, status: TurnStatus,
             author: tuple[str, str], parts: list[StoredPart], *, version: int | None) -> Turn:
        self._clock += 60.0
        turn = Turn(len(self.turns) + 1, self.thread_id, parent.id if parent else None, role,
                    status, author[0], author[1], tuple(parts), self._clock, version)
        self.turns.append(turn)
        return turn


#: colours of the branched thread's pictures, so a test can find each one in pixels
ORIGINAL_COLOUR = (200, 200, 40)
VERSION_COLOURS = {1: (220, 30, 30), 2: (30, 160, 40), 3: (30, 40, 210), 4: (150, 40, 190),
                   5: (20, 170, 170)}


def branched_thread() -> tuple[ThreadBuilder, dict[str, Turn]]:
    """The thread the renderers are tested on; its tree, with the head on v5::

        original ─ v1 ─ v2 ─ v3
                    │    └── v5   (current)
                    └── v4

    Bob asks for v2 and v4; a failed attempt hangs off v3 and is not a version.
    """
    b = ThreadBuilder()
    t: dict[str, Turn] = {}
    t["photo"] = b.user(None, "make it black and white", images=[picture(ORIGINAL_COLOUR)])
    t["v1"] = b.model(t["photo"], images=[picture(VERSION_COLOURS[1])])
    t["hat"] = b.user(t["v1"], "add a hat", author=BOB)
    t["v2"] = b.model(t["hat"], images=[picture(VERSION_COLOURS[2])])
    t["scarf"] = b.user(t["v2"], "a red scarf too")
    t["v3"] = b.model(t["scarf"], images=[picture(VERSION_COLOURS[3])])
    t["sky"] = b.user(t["v1"], "blue sky instead", author=BOB)
    t["v4"] = b.model(t["sky"], images=[picture(VERSION_COLOURS[4])])
    t["glasses"] = b.user(t["v2"], "sunglasses")
    t["v5"] = b.model(t["glasses"], images=[picture(VERSION_COLOURS[5])])
    t["boom"] = b.user(t["v3"], "set it on fire", status=TurnStatus.FAILED)
    t["boom_answer"] = b.model(t["boom"], status=TurnStatus.FAILED)
    return b, t


def spoil_pictures(b: ThreadBuilder, t: dict[str, Turn]) -> tuple[str, str]:
    """Remove v2's picture from the store and damage v3's; their hashes, in that order."""
    removed = t["v2"].images[0].sha256
    damaged = t["v3"].images[0].sha256
    del b.images[removed]
    b.images[damaged] = b"\x89PNG\r\n\x1a\n not the picture that was stored"
    return removed, damaged
