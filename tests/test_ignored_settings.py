"""Settings the service ignored: a relay that drops ``imageConfig`` answers 1K when the
chat asked for 4K. The chat is told once, in one line; the operator's log names the model
and the relay; /settings shows what came back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.events import ChatKey
from bot.models.ignored_settings import Remembered, ignored, size_class, update
from tests.fakes.gemini import FakeGemini
from tests.harness import Chat, RecordingPlatform, photo, running_bot, settings_for

PRO = "gemini-3-pro-image-preview"
NOTICE = "The model service ignored a setting"


@pytest.fixture
async def relay() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(ignore_image_config=True) as server:
        yield server


@pytest.mark.parametrize(("width", "height", "expected"), [
    (1024, 1024, "1K"), (1376, 768, "1K"), (1584, 672, "1K"), (2048, 2048, "2K"),
    (2736, 1536, "2K"), (4096, 4096, "4K"), (5504, 3072, "4K"), (64, 64, "64×64"),
])
def test_the_size_class_of_a_picture_follows_its_pixel_count(
    width: int, height: int, expected: str
) -> None:
    assert size_class(width, height) == expected


def test_the_services_own_rounding_is_no_mismatch() -> None:
    assert ignored(1264, 848, size="1K", aspect="3:2") == []
    assert ignored(1376, 768, size="1K", aspect="16:9") == []
    [size, aspect] = ignored(1024, 1024, size="4K", aspect="16:9")
    assert (size.asked, size.got) == ("4K", "1K (1024×1024)")
    assert (aspect.asked, aspect.got) == ("16:9", "1:1 (1024×1024)")


def test_a_chat_is_told_again_only_when_it_asks_for_something_else() -> None:
    [missed] = ignored(1024, 1024, size="4K", aspect=None)
    record, untold = update({}, [missed], {"size": "4K"})
    assert untold == [missed]
    again, untold = update(record, [missed], {"size": "4K"})
    assert untold == [] and again == record
    honoured, untold = update(record, [], {"size": "4K"})
    assert honoured["size"] == Remembered("4K", "1K (1024×1024)", still=False)
    [other] = ignored(1024, 1024, size="2K", aspect=None)
    assert update(honoured, [other], {"size": "2K"})[1] == [other]


async def test_a_picture_that_comes_back_1k_when_4k_was_asked_is_told_once(
    tmp_path: Path, relay: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    platform = RecordingPlatform()
    settings = settings_for(tmp_path, relay, gemini_model=PRO)
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, ChatKey("telegram", "42"), private=True)
        await dm.say("/settings size 4K")
        first = await dm.say("watercolor", photo())
        assert relay.requests[-1].generation_config["imageConfig"]["imageSize"] == "4K"
        told = [line for line in (first.text or "").splitlines() if NOTICE in line]
        assert first.kind == "images"
        assert told == ["(The model service ignored a setting: you asked for image size 4K, "
                        "this came back at 1K (1024×1024).)"]
        second = await dm.say("oil painting")
        assert second.kind == "images" and NOTICE not in (second.text or "")
        shown = (await dm.say("/settings")).text or ""
        other = Chat(bot, platform, ChatKey("telegram", "43"), private=True)
        await other.say("watercolor", photo())  # asks for nothing: nothing to tell
    assert "(size): 4K — choices: 1K, 2K, 4K — the last answer came back at 1K (1024×1024)" \
        in shown
    logged = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and "ignored" in r.getMessage()]
    assert logged == [f"{PRO} via 127.0.0.1 ignored image size 4K: the answer came back at "
                      "1K (1024×1024)"]
