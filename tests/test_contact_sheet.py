"""The /history contact sheet: a real PNG of a real branched thread, checked by its pixels."""

from __future__ import annotations

import io
import itertools
import random

from PIL import Image

from bot.history.contact_sheet import (
    CURRENT_COLOUR,
    FRAME_COLOUR,
    MAX_WIDTH,
    TARGET_HEIGHT,
    ContactSheet,
    LinkKind,
    Tile,
    render_contact_sheet,
)
from tests.version_fixtures import (
    ORIGINAL_COLOUR,
    VERSION_COLOURS,
    ThreadBuilder,
    branched_thread,
    picture,
    spoil_pictures,
)

Rgb = tuple[int, int, int]


def pixels(sheet: ContactSheet) -> Image.Image:
    image = Image.open(io.BytesIO(sheet.png))
    assert image.format == "PNG" and image.size == (sheet.width, sheet.height)
    return image.convert("RGB")


def centre(tile: Tile) -> tuple[int, int]:
    left, top, right, bottom = tile.box
    return (left + right) // 2, (top + bottom) // 2


def close(a: Rgb, b: Rgb, tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def assert_fits_a_phone(sheet: ContactSheet) -> None:
    """Tiles inside the canvas and apart; the canvas within what Telegram shows unscaled."""
    assert sheet.width <= MAX_WIDTH and sheet.height <= TARGET_HEIGHT
    for tile in sheet.tiles:
        left, top, right, bottom = tile.box
        assert 0 <= left < right <= sheet.width and 0 <= top < bottom <= sheet.height
    for a, b in itertools.combinations(sheet.tiles, 2):
        assert (a.box[2] <= b.box[0] or b.box[2] <= a.box[0]
                or a.box[3] <= b.box[1] or b.box[3] <= a.box[1]), (a.label, b.label)


def test_a_branched_thread_shows_every_version_and_the_original_as_thumbnails() -> None:
    b, t = branched_thread()
    sheet = render_contact_sheet(b.turns, t["v5"].id, b.load_image)
    assert sheet is not None
    assert [tile.label for tile in sheet.tiles] == ["original", "v1", "v2", "v3", "v4", "v5"]
    image = pixels(sheet)
    assert close(image.getpixel(centre(sheet.tile("original"))), ORIGINAL_COLOUR)
    for number, colour in VERSION_COLOURS.items():
        assert close(image.getpixel(centre(sheet.tile(f"v{number}"))), colour), number
    assert_fits_a_phone(sheet)


def test_the_current_version_is_framed_and_labelled_in_the_marker_colour() -> None:
    b, t = branched_thread()
    sheet = render_contact_sheet(b.turns, t["v5"].id, b.load_image)
    assert sheet is not None and sheet.current is not None
    assert [tile.label for tile in sheet.tiles if tile.is_current] == ["v5"]
    image = pixels(sheet)
    for tile in sheet.tiles:
        left, top, _, bottom = tile.box
        frame = image.getpixel((left - 4, (top + bottom) // 2))
        label_row = [image.getpixel((x, bottom + 14)) for x in range(left - 6, left + 40)]
        if tile.is_current:
            assert frame == CURRENT_COLOUR
            assert label_row.count(CURRENT_COLOUR) > 20  # the pill behind "v5"
        else:
            assert frame != CURRENT_COLOUR and image.getpixel((left - 1, top + 5)) == FRAME_COLOUR
            assert CURRENT_COLOUR not in label_row
    # moving the head moves the mark
    moved = render_contact_sheet(b.turns, t["v3"].id, b.load_image)
    assert moved is not None and moved.current is not None and moved.current.label == "v3"


def test_branches_sit_below_their_parents_with_lines_from_parent_to_child() -> None:
    b, t = branched_thread()
    sheet = render_contact_sheet(b.turns, t["v5"].id, b.load_image)
    assert sheet is not None and sheet.arrangement == "plain"
    cell = {tile.label: (tile.row, tile.column) for tile in sheet.tiles}
    assert cell == {"original": (0, 0), "v1": (0, 1), "v2": (0, 2), "v3": (0, 3),
                    "v5": (1, 3), "v4": (2, 2)}
    kinds = {(link.parent, link.child): link.kind for link in sheet.links}
    assert kinds == {("original", "v1"): LinkKind.STRAIGHT, ("v1", "v2"): LinkKind.STRAIGHT,
                     ("v2", "v3"): LinkKind.STRAIGHT, ("v1", "v4"): LinkKind.ELBOW,
                     ("v2", "v5"): LinkKind.ELBOW}
    image = pixels(sheet)
    for link in sheet.links:  # every segment is really drawn, in the branch's colour
        # (an elbow's first stub is shared with the parent's own arrow and has its colour)
        segments = list(itertools.pairwise(link.points))
        for (x0, y0), (x1, y1) in segments[1:] if link.kind is LinkKind.ELBOW else segments:
            middle = ((x0 + x1) // 2, (y0 + y1) // 2)
            assert image.getpixel(middle) == link.colour, (link.parent, link.child)
    elbow = next(link for link in sheet.links if link.child == "v4")
    _, (gutter_x, _), (_, bottom), _ = elbow.points
    assert bottom > sheet.tile("v5").box[3]  # it runs down past the v5 row to v4's row
    assert gutter_x < sheet.tile("v2").box[0]  # in the gutter between v1's and v2's columns


def test_prompts_are_written_under_the_labels_unless_the_font_cannot_draw_them() -> None:
    b, t = branched_thread()
    chinese = b.user(t["v1"], "把背景换成成都的街景")
    v6 = b.model(chinese, images=[picture((60, 60, 60))])
    emoji = b.user(v6, "more sparkle ✨ please")
    v7 = b.model(emoji, images=[picture((70, 70, 70))])
    hidden = b.user(t["v4"], "softer\u200b\nlight\x00")
    v8 = b.model(hidden, images=[picture((80, 80, 80))])
    sheet = render_contact_sheet(b.turns, v7.id, b.load_image)
    assert sheet is not None
    assert sheet.tile("v2").caption == "add a hat"
    assert sheet.tile(f"v{v8.version}").caption == "softer light"
    assert sheet.tile("v1").caption is not None and sheet.tile("v1").caption.endswith("…")
    assert sheet.tile("v6").caption is None and sheet.tile("v7").caption is None
    image = pixels(sheet)
    left, _, right, bottom = sheet.tile("v6").box
    label = image.crop((left, bottom + 8, left + 60, bottom + 46))
    assert label.convert("L").getextrema()[0] < 80  # "v6" itself is drawn
    caption = image.crop((left, bottom + 48, right, bottom + 76)).convert("L")
    assert caption.getextrema()[0] > 240  # and nothing (no boxes) where the prompt would be


def test_a_removed_or_damaged_picture_leaves_a_crossed_out_tile() -> None:
    b, t = branched_thread()
    spoil_pictures(b, t)
    sheet = render_contact_sheet(b.turns, t["v5"].id, b.load_image)
    assert sheet is not None
    image = pixels(sheet)
    for label in ("v2", "v3"):
        assert image.getpixel(centre(sheet.tile(label))) == FRAME_COLOUR
    assert close(image.getpixel(centre(sheet.tile("v5"))), VERSION_COLOURS[5])


def test_one_version_makes_a_small_sheet_and_none_makes_no_sheet() -> None:
    b = ThreadBuilder()
    ask = b.user(None, "a lighthouse at dusk")
    assert render_contact_sheet(b.turns, ask.id, b.load_image) is None
    v1 = b.model(ask, images=[picture((10, 120, 200))])
    sheet = render_contact_sheet(b.turns, v1.id, b.load_image)
    assert sheet is not None and [tile.label for tile in sheet.tiles] == ["v1"]
    assert sheet.tiles[0].is_current and sheet.links == ()
    assert sheet.width < MAX_WIDTH // 2
    assert close(pixels(sheet).getpixel(centre(sheet.tiles[0])), (10, 120, 200))


def test_a_version_with_several_pictures_shows_four_and_counts_the_rest() -> None:
    b = ThreadBuilder()
    ask = b.user(None, "five takes")
    colours = [(200, 0, 0), (0, 0, 200), (0, 160, 0), (200, 200, 0), (90, 0, 90)]
    v1 = b.model(ask, images=[picture(colour) for colour in colours])
    sheet = render_contact_sheet(b.turns, v1.id, b.load_image)
    assert sheet is not None
    left, top, right, bottom = sheet.tiles[0].box
    image = pixels(sheet)
    quarter = (right - left) // 4
    for colour, (x, y) in zip(colours, [(left + quarter, top + quarter),
                                        (right - quarter, top + quarter),
                                        (left + quarter, bottom - quarter),
                                        (right - quarter, bottom - quarter)], strict=False):
        assert close(image.getpixel((x, y)), colour)
    corner = image.crop((right - 40, top + 4, right - 4, top + 30)).convert("L")
    darkest, brightest = corner.getextrema()
    assert darkest < 30 and brightest > 200  # white "+1" on black


def linear(count: int) -> tuple[ThreadBuilder, int]:
    b = ThreadBuilder()
    prompt = b.user(None, "a cat", images=[picture((200, 100, 50), (800, 600), "JPEG")])
    for number in range(count):
        answer = b.model(prompt, images=[picture(((number * 37) % 256, 90, 140))])
        prompt = b.user(answer, f"step {number}: more dramatic light")
    return b, answer.id


def test_sixty_versions_in_a_line_wrap_into_rows_that_fit_a_phone() -> None:
    b, head = linear(60)
    sheet = render_contact_sheet(b.turns, head, b.load_image)
    assert sheet is not None and sheet.arrangement == "folded"
    assert [tile.label for tile in sheet.tiles] == ["original"] + [f"v{n}" for n in range(1, 61)]
    assert sheet.current is not None and sheet.current.label == "v60"
    assert_fits_a_phone(sheet)
    assert sheet.tiles[0].box[2] - sheet.tiles[0].box[0] >= 120  # thumbnails stay visible
    wrapped = [link for link in sheet.links if link.kind is LinkKind.TAGGED]
    assert wrapped and all(sheet.tile(link.child).column == 0 for link in wrapped)
    assert all(sheet.tile(link.child).parent_tag == link.parent for link in wrapped)
    image = pixels(sheet)
    assert image.getpixel((sheet.current.box[0] - 4, centre(sheet.current)[1])) == CURRENT_COLOUR


def test_many_variations_of_one_photo_are_stacked_side_by_side() -> None:
    b = ThreadBuilder()
    photo = b.user(None, "", images=[picture(ORIGINAL_COLOUR)])
    for number in range(30):
        answer = b.model(b.user(photo, f"variation {number}"), images=[picture((number, 0, 0))])
    sheet = render_contact_sheet(b.turns, answer.id, b.load_image)
    assert sheet is not None and sheet.arrangement == "stacked"
    assert len(sheet.tiles) == 31 and sheet.width > MAX_WIDTH // 2
    assert_fits_a_phone(sheet)
    far = [tile for tile in sheet.tiles if tile.column > 1]
    assert far and all(tile.parent_tag is not None for tile in far)


def test_a_bushy_tree_of_sixty_is_packed_and_still_names_every_parent() -> None:
    rng = random.Random(5)
    b = ThreadBuilder()
    answers = [b.model(b.user(None, "start", images=[picture((1, 1, 1))]),
                       images=[picture((2, 2, 2))])]
    for _ in range(59):
        parent = rng.choice(answers) if rng.random() < 0.3 else answers[-1]
        answers.append(b.model(b.user(parent, "again"), images=[picture((3, 3, 3))]))
    sheet = render_contact_sheet(b.turns, answers[20].id, b.load_image)
    assert sheet is not None and sheet.arrangement == "packed"
    assert len(sheet.tiles) == 61 and sheet.current is not None
    assert sheet.current.label == "v21"
    assert_fits_a_phone(sheet)
    for link in sheet.links:  # a parent is either the left neighbour or named in a tag
        parent, child = sheet.tile(link.parent), sheet.tile(link.child)
        if link.kind is LinkKind.STRAIGHT:
            assert (child.row, child.column) == (parent.row, parent.column + 1)
        else:
            assert link.kind is LinkKind.TAGGED and child.parent_tag == link.parent


def test_a_long_thread_shows_its_newest_versions_and_keeps_the_current_one() -> None:
    """Every tile costs a picture decode: 300 versions would take seconds and be stamps."""
    b, _head = linear(300)
    versions = [t for t in b.turns if t.is_model]
    loaded: list[str] = []

    def load(sha256: str) -> bytes:
        loaded.append(sha256)
        return b.load_image(sha256)

    sheet = render_contact_sheet(b.turns, versions[-1].id, load)
    assert sheet is not None
    assert [tile.label for tile in sheet.tiles] == [f"v{n}" for n in range(241, 301)]
    assert len(loaded) == 60
    assert sheet.current is not None and sheet.current.label == "v300"
    assert sheet.tile("v241").parent_tag == "v240"  # its parent is off the sheet, named
    assert_fits_a_phone(sheet)
    assert sheet.tiles[0].box[2] - sheet.tiles[0].box[0] >= 120

    went_back = render_contact_sheet(b.turns, versions[9].id, b.load_image)  # v10 current
    assert went_back is not None and went_back.current is not None
    assert went_back.current.label == "v10" and len(went_back.tiles) == 60
    assert [t.label for t in went_back.tiles[1:]] == [f"v{n}" for n in range(242, 301)]
    assert_fits_a_phone(went_back)
