"""/export: the zip of a real branched thread, its manifest, and its page in a real Chromium."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.core.threads import Turn
from bot.history.export import DEFAULT_MAX_BYTES, ExportTooLarge, ThreadExport, export_thread
from tests.version_fixtures import (
    MODEL,
    ORIGINAL_COLOUR,
    VERSION_COLOURS,
    ThreadBuilder,
    branched_thread,
    spoil_pictures,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# read at import: the autouse clean_env fixture removes CHATBRUSH_* before each test runs
REQUIRE_BROWSER = bool(os.environ.get("CHATBRUSH_REQUIRE_BROWSER"))
needs_browser = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not REQUIRE_BROWSER,
    reason="chromium is not installed (CHATBRUSH_REQUIRE_BROWSER=1 makes this a failure)")

EXPORTED_AT = 1_735_800_000.0  # 2025-01-02 06:40:00 UTC
SCRIPT_PROMPT = "<script>document.title='pwned'</script> & make it <b>pop</b>\nplease"
SHADY_NAME = 'Eve "<img src=x onerror=alert(1)>"'


def exported(**options: Any) -> tuple[ThreadBuilder, dict[str, Turn], ThreadExport]:
    b, t = branched_thread()
    t["shady"] = b.user(t["v4"], SCRIPT_PROMPT, author=("333", SHADY_NAME))
    t["v6"] = b.model(t["shady"], text="Here is a bolder version.")
    costs = {t["v1"].id: 0.039, t["v2"].id: 0.039, t["v5"].id: 0.134, t["v6"].id: 0.0012}
    options.setdefault("costs", costs)
    result = export_thread(b.thread(t["v5"]), b.turns, b.load_image,
                           exported_at=EXPORTED_AT, **options)
    return b, t, result


def members(result: ThreadExport) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(result.data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def manifest(result: ThreadExport) -> dict[str, Any]:
    return json.loads(members(result)[f"{result.folder}/provenance.json"])


def pictures(result: ThreadExport) -> set[str]:
    """The picture files in the zip, as paths inside its folder (images/v3.png)."""
    return {name.removeprefix(f"{result.folder}/") for name in members(result)
            if name.startswith(f"{result.folder}/images/")}


def test_the_zip_holds_the_page_the_manifest_and_every_picture_at_full_size() -> None:
    b, _, result = exported()
    files = members(result)
    folder = "chatbrush-thread-7-20250102-064000"
    assert (result.folder, result.filename) == (folder, f"{folder}.zip")
    assert all(name.startswith(f"{folder}/") for name in files)
    assert {f"{folder}/index.html", f"{folder}/provenance.json"} <= set(files)
    images = {name.removeprefix(f"{folder}/"): data for name, data in files.items()
              if name.startswith(f"{folder}/images/")}
    assert set(images) == {
        "images/turn1.png", "images/v1.png", "images/v2.png", "images/v3.png",
        "images/v4.png", "images/v5.png"}
    # byte for byte what was stored, and every stored picture is there
    assert {hashlib.sha256(d).hexdigest(): d for d in images.values()} == b.images
    assert result.missing_images == ()


def test_every_sha256_in_the_manifest_matches_the_bytes_in_the_zip() -> None:
    b, _, result = exported()
    files = members(result)
    records = [image for turn in manifest(result)["turns"] for image in turn["images"]]
    assert len(records) == sum(len(turn.images) for turn in b.turns) == 6
    for record in records:
        data = files[f"{result.folder}/{record['file']}"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert (record["bytes"], record["mime_type"]) == (len(data), "image/png")
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (record["width"], record["height"])


def test_the_manifest_records_every_turn_with_who_when_what_model_and_cost() -> None:
    b, t, result = exported()
    data = manifest(result)
    assert data["format"] == "chatbrush-export/1"
    assert data["exported_at"] == "2025-01-02T06:40:00Z"
    assert data["thread"] == {
        "id": 7, "chat": {"platform": "telegram", "chat_id": "-100123", "topic_id": None},
        "external_key": None, "created_at": "2025-01-02T03:01:00Z", "created_by": "111",
        "head_turn_id": t["v5"].id, "current_version": 5}
    turns = {turn["id"]: turn for turn in data["turns"]}
    assert list(turns) == [turn.id for turn in b.turns]
    v4 = turns[t["v4"].id]
    assert v4 == {
        "id": t["v4"].id, "parent_id": t["sky"].id, "role": "model", "status": "ok",
        "author": {"id": "model", "name": MODEL}, "created_at": "2025-01-02T03:08:00Z",
        "text": "", "images": v4["images"], "model": MODEL, "version": 4,
        "parent_version": 1, "prompt_turn_id": t["sky"].id, "prompt": "blue sky instead",
        "cost_usd": None}
    assert turns[t["sky"].id]["author"] == {"id": "222", "name": "Bob"}
    assert turns[t["sky"].id]["text"] == "blue sky instead"
    assert turns[t["v5"].id]["cost_usd"] == 0.134
    assert turns[t["v6"].id]["prompt"] == SCRIPT_PROMPT
    assert turns[t["v6"].id]["text"] == "Here is a bolder version."
    assert turns[t["boom"].id]["status"] == "failed"
    assert turns[t["boom_answer"].id]["version"] is None
    assert data["total_cost_usd"] == pytest.approx(0.039 + 0.039 + 0.134 + 0.0012)
    assert "thinking about it" not in json.dumps(data)  # the model's hidden thoughts stay out


class _Page(HTMLParser):
    """What a page references and which elements it has, as a browser would parse it."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.tags: list[str] = []
        self.node_images = 0
        self._in_node = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "action")]
        if tag == "a" and "node" in (values.get("class") or "").split():
            self._in_node = True
        elif tag == "img" and self._in_node:
            self.node_images += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_node = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> _Page:
    page = _Page()
    page.feed(markup)
    return page


def test_the_page_escapes_what_people_typed_and_references_nothing_outside() -> None:
    _, _, result = exported()
    markup = members(result)[f"{result.folder}/index.html"].decode()
    page = parse(markup)
    assert "script" not in page.tags and "b" not in page.tags
    assert SCRIPT_PROMPT in "".join(page.text)
    assert SHADY_NAME in "".join(page.text)
    assert all(ref.startswith(("data:image/jpeg;base64,", "#", "images/"))
               for ref in page.references), page.references
    assert "default-src 'none'" in markup  # and the browser would refuse anything else


def test_costs_and_times_are_shown_for_people() -> None:
    _, _, result = exported()
    text = "".join(parse(members(result)[f"{result.folder}/index.html"].decode()).text)
    assert "$0.13" in text and "$0.0012" in text and "$0.21" in text  # total
    assert "Thu 2 Jan 2025, 03:08 UTC" in text and "2025-01-02T03:08:00Z" in text
    _, _, without = exported(costs=None)
    assert "$" not in "".join(parse(members(without)[f"{without.folder}/index.html"]
                                    .decode()).text)


def test_an_export_over_the_cap_is_refused_before_any_picture_is_loaded() -> None:
    b, t = branched_thread()
    loaded: list[str] = []

    def load(sha256: str) -> bytes:
        loaded.append(sha256)
        return b.load_image(sha256)

    stored = sum(turn_image.size for turn_image in {i.sha256: i for turn in b.turns
                                                   for i in turn.images}.values())
    with pytest.raises(ExportTooLarge) as refused:
        export_thread(b.thread(t["v5"]), b.turns, load, max_bytes=stored - 1)
    assert loaded == []
    assert refused.value.limit == stored - 1 and refused.value.size == stored
    assert "too big to export" in refused.value.user_message
    assert " kB" in refused.value.user_message  # a small export is not "0.0 MB"


def test_the_cap_also_holds_for_the_finished_zip() -> None:
    b, t = branched_thread()
    full = export_thread(b.thread(t["v5"]), b.turns, b.load_image, exported_at=EXPORTED_AT)
    with pytest.raises(ExportTooLarge) as refused:
        export_thread(b.thread(t["v5"]), b.turns, b.load_image, max_bytes=len(full.data) - 1,
                      exported_at=EXPORTED_AT)
    assert refused.value.size > refused.value.limit
    exact = export_thread(b.thread(t["v5"]), b.turns, b.load_image, max_bytes=len(full.data),
                          exported_at=EXPORTED_AT)
    assert exact.data == full.data
    assert DEFAULT_MAX_BYTES < 50_000_000  # what a Telegram bot may send as a document


def test_removed_and_damaged_pictures_are_reported_and_the_rest_exported() -> None:
    b, t = branched_thread()
    removed, damaged = spoil_pictures(b, t)
    result = export_thread(b.thread(t["v5"]), b.turns, b.load_image, exported_at=EXPORTED_AT)
    assert set(result.missing_images) == {removed, damaged}
    assert "images/v2.png" not in pictures(result) and "images/v5.png" in pictures(result)
    records = {i["sha256"]: i for turn in manifest(result)["turns"] for i in turn["images"]}
    assert records[removed]["file"] is None and records[removed]["missing"] == "removed"
    assert records[damaged]["file"] is None and "damaged" in records[damaged]["missing"]
    text = "".join(parse(members(result)[f"{result.folder}/index.html"].decode()).text)
    assert "picture removed" in text


def test_a_thread_without_pictures_exports_its_prompts() -> None:
    b = ThreadBuilder()
    ask = b.user(None, "describe a red door")
    b.model(ask, text="A red door in an old wall.")
    result = export_thread(b.thread(ask), b.turns, b.load_image, exported_at=EXPORTED_AT)
    assert pictures(result) == set()
    assert [turn["role"] for turn in manifest(result)["turns"]] == ["user", "model"]


# --------------------------------------------------------------------------- in Chromium


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium on a local file with every network feature off."""
    finished = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True)
    return finished.stdout


def colour_count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 30) -> int:
    lo = [max(0, c - tolerance) for c in colour]
    hi = [min(255, c + tolerance) for c in colour]
    bands = [band.point(lambda v, a=a, z=z: 255 if a <= v <= z else 0)
             for band, a, z in zip(image.split(), lo, hi, strict=True)]
    mask = Image.new("L", image.size, 255)
    for band in bands:
        mask = Image.composite(mask, Image.new("L", image.size, 0), band)
    return sum(1 for v in mask.tobytes() if v)


def screenshot(profile: Path, page: Path, out: Path) -> Image.Image:
    chromium(profile, "--window-size=1200,1400", f"--screenshot={out}", page.as_uri())
    return Image.open(out).convert("RGB")


@needs_browser
@pytest.mark.slow
def test_the_page_opens_offline_in_chromium_with_thumbnails_and_prompts(tmp_path: Path) -> None:
    _, _, result = exported()
    with zipfile.ZipFile(io.BytesIO(result.data)) as archive:
        archive.extractall(tmp_path / "out")
    index = tmp_path / "out" / result.folder / "index.html"

    dom = chromium(tmp_path / "profile", "--dump-dom", index.as_uri())
    page = parse(dom)
    assert "<title>Chatbrush conversation 7</title>" in dom  # the prompt's script never ran
    assert "script" not in page.tags
    text = "".join(page.text)
    for prompt in ("make it black and white", "add a hat", "blue sky instead", "sunglasses",
                   SCRIPT_PROMPT, SHADY_NAME):
        assert prompt in text
    assert page.node_images == 6  # original and v1…v5 in the tree; v6 made no picture

    shot = screenshot(tmp_path / "profile", index, tmp_path / "page.png")
    for colour in (ORIGINAL_COLOUR, *VERSION_COLOURS.values()):
        assert colour_count(shot, colour) > 2000, colour  # each thumbnail really painted
    assert colour_count(shot, (255, 122, 0), tolerance=10) > 500  # the current version's frame

    # A zip viewer that extracts only index.html still shows the whole tree.
    alone = tmp_path / "alone" / "index.html"
    alone.parent.mkdir()
    shutil.copy(index, alone)
    lone_shot = screenshot(tmp_path / "profile2", alone, tmp_path / "alone.png")
    for colour in VERSION_COLOURS.values():
        assert colour_count(lone_shot, colour) > 2000, colour
