"""A platform the core has never heard of, added from outside ``bot/``.

"Memo", an in-memory board of rooms, is registered exactly as an installed adapter is (the
entry-point loader calls the same :func:`bot.core.platforms.register`): its settings group,
its /help wording, its album wait and its allow-list. A real edit then runs through the
real intake, store and model client (FakeGemini), and the core answers it as it answers
any platform, in Memo's own words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, SecretStr, field_validator

from bot.app.cli import no_platform_line
from bot.app.runtime import Runtime, open_runtime
from bot.core import platforms
from bot.core.config import CommaList, Settings, split_commas
from bot.core.events import Attachment, ChatKey, Incoming, InputImage, Sender
from bot.core.platforms import AllowList, PlatformInfo, PlatformSettings, register
from bot.core.receiving import Receipt
from bot.flow.intake import Intake
from tests.fakes.gemini import FakeGemini
from tests.harness import ANN, BOB, RecordingChannel, fast_model, image_attachments, photo
from tests.harness import settings_for as core_settings


class MemoSettings(PlatformSettings):
    """``MEMO_*``: read from the environment and ``.env`` like every other group."""

    memo_token: SecretStr | None = None
    memo_allowed_rooms: CommaList = ()
    memo_album_wait: float = Field(1.0, ge=0)

    def configured(self) -> bool:
        return self.memo_token is not None

    def allow_list(self) -> AllowList:
        return AllowList(frozenset(self.memo_allowed_rooms))

    def album_debounce(self) -> float:
        return self.memo_album_wait

    @field_validator("memo_allowed_rooms", mode="before")
    @classmethod
    def _rooms(cls, value: Any) -> Any:
        return split_commas(value)


class MemoBoard:
    """The adapter: notes posted to a room become events; answers are kept per room."""

    name = "memo"

    def __init__(self, settings: Settings, intake: Intake) -> None:
        self.intake = intake
        self.rooms: dict[str, RecordingChannel] = {}
        self.notes = 0

    async def post(self, room: str, text: str, pictures: Sequence[bytes] = (), *,
                   author: Sender = ANN, album: str | None = None,
                   addressed: bool = True) -> Receipt | None:
        self.notes += 1
        return await self.intake.receive(Incoming(
            chat=ChatKey(self.name, room), message_id=str(self.notes), sender=author,
            text=text, attachments=image_attachments(pictures), addressed=addressed,
            group_id=album))

    def room(self, room: str) -> RecordingChannel:
        return self.rooms.setdefault(room, RecordingChannel())

    # the Platform and Adapter ports
    def channel(self, event: Incoming) -> RecordingChannel:
        return self.room(event.chat.chat_id)

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        return [InputImage(attachment.data or b"", attachment.mime_type, attachment.filename)]

    async def language_of(self, sender: Sender) -> str | None:
        return None

    def mount(self, web_app: Any) -> bool:
        return False

    async def start(self, *, webhook: bool) -> None:
        pass

    async def stop_receiving(self) -> None:
        pass

    async def close(self) -> None:
        pass


def create(settings: Settings, intake: Intake) -> MemoBoard | None:
    return MemoBoard(settings, intake) if MemoSettings.of(settings).configured() else None


MEMO = PlatformInfo(
    name="memo",
    title="Memo",
    help_tips=("Pin a picture to the board with what to change.",
               "Pin several in one album to combine them."),
    settings=MemoSettings,
    create=create,
    setup_hint="MEMO_TOKEN",
)


@pytest.fixture(autouse=True)
def memo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memo installed for this test only (the registry is restored afterwards)."""
    monkeypatch.setattr(platforms, "_registry", dict(platforms.registered()))
    register(MEMO)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as gemini:
        yield gemini


def memo_settings(tmp_path: Path, fake: FakeGemini, **memo: Any) -> Settings:
    return core_settings(tmp_path, fake, memo_token="memo-secret", **memo)


@asynccontextmanager
async def run_memo(settings: Settings) -> AsyncIterator[tuple[Runtime, MemoBoard]]:
    """As ``chatbrush run`` does: every configured platform's factory, then processing."""
    async with open_runtime(settings, model=fast_model(settings)) as runtime:
        adapters = [f(settings, runtime.intake) for f in platforms.adapter_factories().values()]
        [board] = [a for a in adapters if isinstance(a, MemoBoard)]
        runtime.intake.register(board)
        await board.start(webhook=False)
        await runtime.intake.start()
        yield runtime, board


@pytest.fixture
async def memo(tmp_path: Path, fake: FakeGemini) -> AsyncIterator[tuple[Runtime, MemoBoard]]:
    async with run_memo(memo_settings(tmp_path, fake, memo_album_wait=0.6)) as running:
        yield running


async def test_a_registered_platform_gets_its_picture_edited(
    memo: tuple[Runtime, MemoBoard], fake: FakeGemini
) -> None:
    runtime, board = memo
    receipt = await board.post("lobby", "make it watercolor", [photo()])
    assert receipt is not None
    await runtime.intake.wait(receipt)
    [answer] = board.room("lobby").sent
    assert answer.kind == "images" and (answer.text or "").startswith("v1")
    assert fake.requests[0].prompt == "make it watercolor"
    assert len(fake.requests[0].images("user")) == 1


async def test_help_is_in_the_platforms_own_words(memo: tuple[Runtime, MemoBoard]) -> None:
    runtime, board = memo
    receipt = await board.post("lobby", "/help")
    assert receipt is not None
    await runtime.intake.wait(receipt)
    [help_text] = board.room("lobby").texts()
    assert "• Pin a picture to the board with what to change." in help_text
    assert "/undo" in help_text
    assert "reply to one of my messages" not in help_text  # no other platform's tips


async def test_an_album_waits_as_long_as_the_platform_says(
    memo: tuple[Runtime, MemoBoard], fake: FakeGemini
) -> None:
    """Memo's parts arrive further apart than other platforms' albums wait; with its own
    0.6 s they still make one turn, answered no sooner than 0.6 s after the last part."""
    runtime, board = memo
    await board.post("lobby", "", [photo((255, 0, 0))], album="a1", addressed=False)
    await board.post("lobby", "put the two together", [photo((0, 0, 255))], album="a1")
    await asyncio.sleep(0.3)  # the gap between two parts is what this test is about
    last = await board.post("lobby", "", [photo((0, 255, 0))], album="a1", addressed=False)
    posted = time.monotonic()
    assert last is not None
    await runtime.intake.drain()
    assert len(fake.requests) == 1 and len(fake.requests[0].images("user")) == 3
    assert [s.kind for s in board.room("lobby").sent] == ["images"]
    assert time.monotonic() - posted >= 0.5  # it waited for more parts


async def test_its_allow_list_and_setup_hint_come_from_its_settings(
    tmp_path: Path, fake: FakeGemini
) -> None:
    settings = memo_settings(tmp_path, fake, memo_allowed_rooms="lobby")
    assert "MEMO_TOKEN" in no_platform_line()
    assert [p.name for p in platforms.configured_platforms(settings)] == ["memo"]
    async with run_memo(settings) as (runtime, board):
        assert await board.post("attic", "make it red", [photo()], author=BOB) is None
        receipt = await board.post("lobby", "make it red", [photo()], author=BOB)
        assert receipt is not None
        await runtime.intake.wait(receipt)
        await board.room("attic").wait_for_text("isn't available here")
        assert board.room("lobby").last.kind == "images"
        assert len(fake.requests) == 1
