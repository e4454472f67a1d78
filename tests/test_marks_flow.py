"""Mark the spot, end to end (issue 22): a marked copy becomes a region edit, the model's
answer is put back into the original inside the region only, and the turn keeps the
region (both storage backends) for the sheet, the export and "try again"."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from adapters.telegram.adapter import TelegramAdapter
from bot.core.events import ChatKey
from bot.core.ports.threads import NewImage, NewPart, NewRegion
from bot.core.store import Store
from bot.core.threads import Role
from bot.history.contact_sheet import REGION_COLOUR
from tests.backends import BACKENDS, open_backend
from tests.fakes.gemini import FakeGemini
from tests.fakes.telegram_api import FakeTelegram
from tests.processes import run_chatbrush
from tests.test_marks import photo
from tests.test_telegram import answers_to, make_settings, running

CHAT = ChatKey("telegram", "-100", None)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request.param, tmp_path) as opened:
        yield opened


async def test_a_turn_keeps_its_region_and_picture_until_the_thread_goes(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.MODEL,
                                parts=[NewPart(text="done")])
    unblended = NewImage(b"the model's own picture", "image/png", 8, 6)
    await store.set_turn_region(turn.id, NewRegion(b"mask png", 640, 480, unblended))
    found = await store.turn_regions([turn.id, turn.id + 99])
    assert list(found) == [turn.id]
    region = found[turn.id]
    assert (region.mask_png, region.width, region.height) == (b"mask png", 640, 480)
    assert region.image is not None and (region.image.width, region.image.height) == (8, 6)
    assert await store.image_bytes(region.image.sha256) == unblended.data
    await store.delete_thread(thread.id)
    assert await store.turn_regions([turn.id]) == {}
    with pytest.raises(KeyError):
        await store.image_bytes(region.image.sha256)



async def test_forget_removes_the_marked_copy_a_person_sent(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="only here: blue")], author_id="1")
    marked = NewImage(b"the marked copy as sent", "image/jpeg", 8, 6)
    await store.set_turn_region(turn.id, NewRegion(b"mask png", 640, 480, marked))
    [kept] = (await store.turn_regions([turn.id])).values()
    assert kept.image is not None

    await store.forget_author("telegram", "1", chat_id=CHAT.chat_id)

    assert await store.turn_regions([turn.id]) == {}
    with pytest.raises(KeyError):
        await store.image_bytes(kept.image.sha256)

# ---------------------------------------------------------------------- pictures
def scene() -> Image.Image:
    """A picture with edges everywhere, like a photo (the alignment holds on to them)."""
    return photo(640, 480)


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


#: the loop drawn on the copy (full-size pixels of the picture it marks) and its pen width
LOOP = (200, 150, 440, 330)
PEN = 6


def marked_copy(shown: bytes, *, colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A closed red loop drawn on ``shown``, then sent as phones and Telegram send a
    photo: halved and recompressed as JPEG at quality 70."""
    picture = decoded(shown)
    ImageDraw.Draw(picture).ellipse(LOOP, outline=colour, width=PEN)
    half = picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    half.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def loop_mask(size: tuple[int, int], grow: int) -> np.ndarray:
    """The area the loop closes, grown (or shrunk, with a negative ``grow``) by ``grow`` px."""
    left, top, right, bottom = LOOP
    area = Image.new("L", size, 0)
    ImageDraw.Draw(area).ellipse((left - grow, top - grow, right + grow, bottom + grow),
                                 fill=255)
    return np.asarray(area) > 0


def assert_changed_only_in_the_loop(before: Image.Image, after: Image.Image) -> None:
    """Outside the loop (12 px past the pen and the region's margin) every pixel is the
    original's; well inside it, the model's answer shows."""
    assert after.size == before.size
    old, new = np.asarray(before, np.int16), np.asarray(after, np.int16)
    changed = np.abs(old - new).max(axis=2) > 0
    outside = ~loop_mask(before.size, grow=12 + PEN)
    ys, xs = np.nonzero(changed & outside)
    assert not (changed & outside).any(), (
        f"{len(ys)} pixels outside the marks changed, in {xs.min()}-{xs.max()} x "
        f"{ys.min()}-{ys.max()}, by up to {np.abs(old - new)[changed & outside].max()}")
    inside = loop_mask(before.size, grow=-(PEN + 12))
    assert changed[inside].mean() > 0.95


# ---------------------------------------------------------------------- Telegram
@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram, gemini: FakeGemini, tmp_path: Path
              ) -> AsyncIterator[TelegramAdapter]:
    async with running(tg, make_settings(tg, gemini, tmp_path)) as adapter:
        yield adapter


def picture_of(message: dict[str, Any], tg: FakeTelegram) -> bytes:
    return tg.file_data(message["photo"][-1]["file_id"])


async def first_version(tg: FakeTelegram, gemini: FakeGemini, chat: dict[str, Any],
                        alice: dict[str, Any], picture: Image.Image) -> dict[str, Any]:
    gemini.enqueue_picture(png(picture))
    [v1] = await answers_to(tg, tg.send(chat, alice, "a park with shapes"))
    return v1


@pytest.mark.timeout(60)
async def test_a_reply_with_a_marked_copy_changes_only_the_marked_spot(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    original = scene()
    v1 = await first_version(tg, gemini, chat, alice, original)
    # the model recolours the whole picture, as Gemini repaints a little of everything
    gemini.enqueue_picture(png(ImageOps.invert(original)))
    asked = tg.send(chat, alice, photo=marked_copy(picture_of(v1, tg)),
                    caption="make the pond blue", reply_to=v1)

    [v2] = await answers_to(tg, asked)

    assert len(gemini.requests) == 2  # one call for the region edit
    newest = gemini.requests[1].contents[-1]
    shown = [decoded(part_image(p)) for p in newest["parts"] if "inlineData" in p]
    assert len(shown) == 2 and shown[1].tobytes() == original.tobytes()
    assert shown[0].size == original.size and shown[0].tobytes() != original.tobytes()
    words = [p["text"] for p in newest["parts"] if "text" in p]
    assert words[-1] == "make the pond blue" and "outlined" in words[0]
    assert v2["caption"].startswith("v2")
    assert_changed_only_in_the_loop(original, decoded(picture_of(v2, tg)))

    # the model's whole picture is there for the asking
    [whole] = await answers_to(tg, tg.send(chat, alice, "/original", reply_to=v2))
    assert decoded(tg.file_data(whole["document"]["file_id"])).tobytes() == \
        ImageOps.invert(original).tobytes()
    await the_history_and_the_export_show_the_region(tg, chat, alice, original)


async def the_history_and_the_export_show_the_region(
        tg: FakeTelegram, chat: dict[str, Any], alice: dict[str, Any],
        original: Image.Image) -> None:
    [sheet] = await answers_to(tg, tg.send(chat, alice, "/history"))
    drawn = np.asarray(decoded(picture_of(sheet, tg)))
    assert (drawn == REGION_COLOUR).all(axis=2).sum() > 100  # the marked area's edge

    [export] = await answers_to(tg, tg.send(chat, alice, "/export"))
    with zipfile.ZipFile(io.BytesIO(tg.file_data(export["document"]["file_id"]))) as archive:
        folder = archive.namelist()[0].split("/")[0]
        manifest = json.loads(archive.read(f"{folder}/provenance.json"))
        [v2] = [t for t in manifest["turns"] if t.get("version") == 2]
        region = v2["region"]
        assert (region["width"], region["height"]) == original.size
        mask = decoded(archive.read(f"{folder}/{region['mask']}"))
        assert 0.05 < np.asarray(mask.convert("1")).mean() < 0.3
        whole = archive.read(f"{folder}/{region['whole_picture']['file']}")
        assert decoded(whole).tobytes() == ImageOps.invert(original).tobytes()
        assert "Marked area" in archive.read(f"{folder}/index.html").decode()


@pytest.mark.timeout(60)
async def test_a_copy_with_nothing_drawn_is_an_ordinary_edit_and_says_why(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    original = scene()
    v1 = await first_version(tg, gemini, chat, alice, original)
    gemini.enqueue_picture(png(ImageOps.invert(original)))
    copy = io.BytesIO()
    decoded(picture_of(v1, tg)).save(copy, format="JPEG", quality=70)
    asked = tg.send(chat, alice, photo=copy.getvalue(), caption="only here: blue",
                    reply_to=v1)

    [v2] = await answers_to(tg, asked)

    assert "nothing drawn" in v2["caption"]
    assert decoded(picture_of(v2, tg)).tobytes() == ImageOps.invert(original).tobytes()


@pytest.mark.timeout(60)
async def test_another_picture_in_a_reply_is_an_ordinary_edit_without_a_word_about_marks(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    v1 = await first_version(tg, gemini, chat, alice, scene())
    other = photo(320, 240, seed=5)
    asked = tg.send(chat, alice, photo=png(other), caption="put this in the corner",
                    reply_to=v1)

    [v2] = await answers_to(tg, asked)

    assert "marked" not in v2["caption"]
    newest = gemini.requests[1].contents[-1]
    assert [p["text"] for p in newest["parts"] if "text" in p] == ["put this in the corner"]


@pytest.mark.timeout(60)
async def test_an_answer_with_another_composition_is_shown_whole_and_said(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    original = scene()
    v1 = await first_version(tg, gemini, chat, alice, original)
    redrawn = photo(640, 480, seed=9)
    gemini.enqueue_picture(png(redrawn))
    asked = tg.send(chat, alice, photo=marked_copy(picture_of(v1, tg)),
                    caption="make the pond blue", reply_to=v1)

    [v2] = await answers_to(tg, asked)

    assert "redrew the whole picture" in v2["caption"]
    assert decoded(picture_of(v2, tg)).tobytes() == redrawn.tobytes()


@pytest.mark.timeout(60)
async def test_try_again_after_a_failure_keeps_the_same_region(
    tg: FakeTelegram, gemini: FakeGemini, bot: TelegramAdapter
) -> None:
    alice = tg.user(1001, "Alice", "alice")
    chat = tg.private_chat(alice)
    original = scene()
    v1 = await first_version(tg, gemini, chat, alice, original)
    gemini.enqueue_error(500, "backend error")
    asked = tg.send(chat, alice, photo=marked_copy(picture_of(v1, tg), colour=(255, 255, 255)),
                    caption="make the pond blue", reply_to=v1)
    [failed] = await answers_to(tg, asked)
    assert "photo" not in failed

    gemini.enqueue_picture(png(ImageOps.invert(original)))
    again = tg.send(chat, alice, "try again", reply_to=failed)
    [v2] = await answers_to(tg, again)

    first_try, second_try = gemini.requests[1:]
    assert first_try.images("user")[-2:] == second_try.images("user")[-2:]
    assert second_try.texts()[-1] == "make the pond blue"
    assert_changed_only_in_the_loop(original, decoded(picture_of(v2, tg)))


# ---------------------------------------------------------------------- the console
def test_in_the_console_a_marked_copy_after_the_version_edits_only_the_spot(
        tmp_path: Path) -> None:
    original = scene()
    original.save(tmp_path / "photo.png")
    (tmp_path / "marked.jpg").write_bytes(marked_copy(png(original)))
    script = "@photo.png\n@marked.jpg only here: black and white\n/original\n"

    result = run_chatbrush(["console", "--demo"], script, tmp_path, {})

    assert result.returncode == 0, result.stderr
    saved = [tmp_path / line for line in result.stdout.splitlines()
             if line.startswith("chatbrush-out/")]
    assert len(saved) == 2, result.stdout
    edited, whole = (Image.open(path).convert("RGB") for path in saved)
    assert_changed_only_in_the_loop(original, edited)
    inside = np.asarray(edited)[loop_mask(original.size, grow=-(PEN + 12))]
    assert (inside.max(axis=1) - inside.min(axis=1)).max() <= 1  # grey: the demo's edit
    assert "Only the marked area was changed" in result.stdout
    grey = np.asarray(whole)
    assert (grey.max(axis=2) - grey.min(axis=2)).max() <= 1  # the demo's whole picture


def part_image(part: dict[str, Any]) -> bytes:
    return base64.b64decode(part["inlineData"]["data"])
