"""A terminal chat with the bot: one message per line, interactively or from a pipe.

``@path/to/image.jpg`` tokens attach images to a line (``@"with spaces.png"`` works too);
lines starting with ``/`` are commands and lines starting with ``#`` are comments. Images
the bot returns are saved under the output directory and their paths printed on lines of
their own, so scripts can pick them up. The console is one private chat: it continues its
most recent thread across runs, and like every platform it goes through the durable
inbox, so a line whose answer was cut short by Ctrl-C or a crash is finished next start.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import itertools
import os
import re
import stat
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from bot.core.events import (
    Attachment,
    AttachmentKind,
    ChatKey,
    Incoming,
    InputImage,
    Progress,
    Sender,
)
from bot.flow.intake import Intake
from bot.kit.formatting import readable_size
from bot.kit.image_types import OutputImage

PLATFORM = "console"
CONSOLE_CHAT = ChatKey(PLATFORM, "local")
_ATTACHMENT = re.compile(r'(?:(?<=\s)|^)@(?:"(?P<quoted>[^"]+)"|(?P<plain>\S+))')


class ConsoleInputError(Exception):
    """A line we cannot send (a missing, unreadable or unsuitable attachment)."""


def _read_attachment(raw: str, path: Path, max_bytes: int) -> bytes:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConsoleInputError(f"cannot read {raw}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConsoleInputError(f"{raw} is a folder; attach an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ConsoleInputError(f"{raw} is not a regular file; attach an image file")
    too_big = f"{raw} is larger than the {readable_size(max_bytes)} limit"
    if info.st_size > max_bytes:
        raise ConsoleInputError(f"{raw} is {readable_size(info.st_size)}; the limit is "
                                f"{readable_size(max_bytes)}")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # never more, even if the file grows
    except OSError as exc:
        raise ConsoleInputError(f"cannot read {raw}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ConsoleInputError(too_big)
    return data


def parse_line(line: str, *, max_bytes: int, base: Path | None = None
               ) -> tuple[str, list[InputImage]]:
    """Split a typed line into its text and the images its ``@path`` tokens name."""
    images: list[InputImage] = []
    for match in _ATTACHMENT.finditer(line):
        raw = match.group("quoted") or match.group("plain")
        path = Path(raw).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        images.append(InputImage(_read_attachment(raw, path, max_bytes), None, path.name))
    text = _ATTACHMENT.sub("", line).strip()
    return " ".join(text.split()), images


class ConsoleChannel:
    """Prints replies; saves images under ``out_dir`` and prints each path on its own line."""

    def __init__(self, out_dir: Path, stdout: TextIO, stderr: TextIO) -> None:
        self.out_dir = out_dir
        self.stdout = stdout
        self.stderr = stderr
        self._run = uuid.uuid4().hex[:6]
        self._sent = 0

    def _next_id(self) -> str:
        self._sent += 1
        return f"bot-{self._run}-{self._sent}"

    async def send_text(self, text: str) -> list[str]:
        print(f"bot: {text}", file=self.stdout, flush=True)
        return [self._next_id()]

    #: a file is written to disk, not uploaded: no platform limit
    max_file_bytes = 2_000_000_000

    async def send_images(self, images: Sequence[OutputImage], caption: str | None = None,
                          *, as_files: bool = False) -> list[str]:
        if caption:
            print(f"bot: {caption}", file=self.stdout, flush=True)
        ids = []
        for image in images:
            digest = hashlib.sha256(image.data).hexdigest()[:12]
            name = f"chatbrush-{digest}.{image.extension}"
            path = await asyncio.to_thread(self._save, image.data, name)
            print(path, file=self.stdout, flush=True)
            ids.append(self._next_id())
        return ids

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        """Saved under ``out_dir``, its path printed on a line of its own, like images."""
        if caption:
            print(f"bot: {caption}", file=self.stdout, flush=True)
        path = await asyncio.to_thread(self._save, data, Path(filename).name or "chatbrush")
        print(path, file=self.stdout, flush=True)
        return [self._next_id()]

    def _save(self, data: bytes, name: str) -> str:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        path.write_bytes(data)
        return str(path)

    async def progress(self, state: Progress) -> None:
        if state is Progress.WORKING:
            print("… working", file=self.stderr, flush=True)
        elif state is Progress.QUEUED:
            print("… waiting for the previous request", file=self.stderr, flush=True)

    async def is_admin(self, sender: Sender) -> bool:
        return True  # whoever runs the console runs the bot


class ConsolePlatform:
    """The console as a platform: one channel for everything, attachments carried inline."""

    name = PLATFORM

    def __init__(self, channel: ConsoleChannel) -> None:
        self._channel = channel

    def channel(self, event: Incoming) -> ConsoleChannel:
        return self._channel

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        return [InputImage(attachment.data or b"", attachment.mime_type, attachment.filename)]

    async def language_of(self, sender: Sender) -> str | None:
        return None  # the console speaks the language its sender was created with


def _terminal_language() -> str | None:
    """``zh_CN`` from ``LANG=zh_CN.UTF-8`` (or LC_ALL, LC_MESSAGES): the console answers
    in the terminal's language."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "").split(".")[0]
        if value and value not in ("C", "POSIX"):
            return value
    return None


def _readline(stdin: TextIO) -> str:
    """One line; bytes that are not UTF-8 become U+FFFD instead of ending the console."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is not None:
        raw: bytes = buffer.readline()
        return raw.decode("utf-8", errors="replace")
    return stdin.readline()


async def run_console(
    intake: Intake,
    *,
    out_dir: Path,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Feed stdin lines to the bot one at a time; return at end of input."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    interactive = stdin.isatty()
    channel = ConsoleChannel(out_dir, stdout, stderr)
    intake.register(ConsolePlatform(channel))
    await intake.start()  # a line left unanswered by the last run is answered first
    user = getpass.getuser() or "you"
    sender = Sender(id=user, display_name=user, language=_terminal_language())
    if interactive:
        print(f"Chatbrush console — model: {intake.turns.model.name}. Attach images with "
              "@path/to/photo.jpg, /help for commands, # for comments, Ctrl-D to quit.",
              file=stdout)
    # Unique message ids across runs: the console's history lives in the same database.
    message_ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count(1))
    max_bytes = intake.settings.chatbrush_max_upload_bytes
    while True:
        if interactive:
            print("> ", end="", file=stdout, flush=True)
        line = await asyncio.to_thread(_readline, stdin)
        if not line:
            break
        incoming = _incoming(line.strip(), sender, message_ids, max_bytes=max_bytes,
                             stdout=stdout, stderr=stderr)
        receipt = await intake.receive(incoming) if incoming is not None else None
        if receipt is not None:
            await intake.wait(receipt)
    await intake.drain()
    if interactive:
        print(file=stdout)
    return 0


def _incoming(line: str, sender: Sender, message_ids: Iterator[str], *, max_bytes: int,
              stdout: TextIO, stderr: TextIO) -> Incoming | None:
    """The message one typed line makes, or ``None`` (blank, a comment, or refused: the
    reason is printed, the bot is not asked)."""
    if not line:
        return None
    if line.startswith("#"):
        print("… a comment (lines starting with # are not sent)", file=stderr, flush=True)
        return None
    try:
        text, images = parse_line(line, max_bytes=max_bytes)
    except ConsoleInputError as exc:
        print(f"bot: {exc}", file=stdout, flush=True)
        return None
    return Incoming(
        chat=CONSOLE_CHAT,
        message_id=next(message_ids),
        sender=sender,
        text=text,
        attachments=tuple(
            Attachment(AttachmentKind.IMAGE, filename=image.filename,
                       size=len(image.data), data=image.data)
            for image in images
        ),
        is_private=True,
    )
