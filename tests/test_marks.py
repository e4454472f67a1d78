"""Region edits: what a person drew on a copy of a picture, and only that part changed.

Every picture is made here: photo-like (gradients, shapes, blur, sensor grain), marked
with a phone-like pen (red and white, loops, scribbles, blots), and sent back the way
Telegram sends photos (halved and recompressed as JPEG at quality 70). The checks are the
ones a user would notice: the region covers what was drawn and not much more, the
picture is untouched outside it, and a model answer that comes back at another size or a
few pixels off still lands in the right place.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy import ndimage

from bot.kit.marks import (
    MARGIN_PX,
    Alignment,
    MarkResult,
    NoRegion,
    NotMarked,
    Region,
    align_answer,
    composite,
    find_marks,
    mask_png,
    outlined_copy,
    region_from_png,
)

#: draws a mark with its pen (fill None) or, given a fill, the area the mark means
Paint = Callable[[ImageDraw.ImageDraw, "int | None"], None]
ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1200, 900
RED, WHITE = (230, 20, 30), (255, 255, 255)
#: the soft edge must end within this many pixels of what was drawn (the issue's figure)
EDGE_REACH = 12


def photo(width: int = WIDTH, height: int = HEIGHT, seed: int = 1) -> Image.Image:
    """Gradients, soft shapes in muted colours and grain: a photo as far as edges go."""
    rng = np.random.default_rng(seed)
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    picture = Image.merge("RGB", (across, down, Image.new("L", (width, height), 120)))
    draw = ImageDraw.Draw(picture)
    for k in range(36):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 30, width // 9))
        colour = tuple(int(c) for c in rng.integers(40, 200, 3))
        (draw.ellipse if k % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    picture = picture.filter(ImageFilter.GaussianBlur(2))
    grain = rng.normal(0, 5, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(picture) + grain, 0, 255).astype(np.uint8))


def as_telegram_sends(picture: Image.Image, crop: tuple[int, int, int, int] | None = None
                      ) -> Image.Image:
    """Optionally cropped, halved, and recompressed as JPEG at quality 70."""
    if crop:
        picture = picture.crop(crop)
    half = picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    half.save(buffer, format="JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue()))


def drawn_area(size: tuple[int, int], paint: Paint) -> np.ndarray:
    """The area a drawing covers (as a boolean array), by drawing it on a blank page."""
    page = Image.new("L", size, 0)
    paint(ImageDraw.Draw(page), 255)
    return np.asarray(page) > 0


def changed_pixels(original: Image.Image, region: Region) -> np.ndarray:
    """Every pixel the composite takes anything of the answer at: the region.

    A black picture composited with a white answer gives the blend weights themselves
    (a recoloured answer would hide the faintest ones in rounding).
    """
    black, white = Image.new("L", original.size, 0), Image.new("L", original.size, 255)
    weights = composite(black, white, region, alignment=Alignment(1.0, 1.0, 0.0, 0.0))
    return np.asarray(weights) > 0


def distance_from(area: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~area)


def marked_with(picture: Image.Image, paint: Paint) -> Image.Image:
    copy = picture.copy()
    paint(ImageDraw.Draw(copy), None)
    return copy


def loop(colour: tuple[int, int, int], box: tuple[int, int, int, int], width: int = 8
         ) -> Paint:
    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        if fill is None:
            draw.ellipse(box, outline=colour, width=width)
        else:  # the area meant: the stroke and everything inside it
            draw.ellipse(box, fill=fill)
    return paint


def scribble(colour: tuple[int, int, int], left: int, top: int, width: int = 7) -> Paint:
    """A zigzag over a patch about 220×140, like scribbling over a face."""
    points = [(left + 22 * k, top + (0 if k % 2 else 140)) for k in range(11)]

    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        if fill is None:
            draw.line(points, fill=colour, width=width, joint="curve")
        else:  # the area it covers: the hull of the zigzag
            draw.polygon([(left, top), (left + 220, top), (left + 220, top + 140),
                          (left, top + 140)], fill=fill)
    return paint


def assert_region_fits(original: Image.Image, result: MarkResult | NotMarked,
                       meant: np.ndarray, *, covered: float = 0.99) -> np.ndarray:
    assert isinstance(result, MarkResult), result
    changed = changed_pixels(original, result.region)
    assert changed[meant].mean() >= covered, "the region misses part of what was drawn"
    reach = distance_from(meant)[changed].max()
    assert reach <= EDGE_REACH, f"the region reaches {reach:.1f} px past the marks"
    return changed


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return photo()


@pytest.mark.parametrize("colour", [RED, WHITE], ids=["red", "white"])
def test_a_closed_loop_marks_everything_inside_it(original: Image.Image, colour) -> None:
    paint = loop(colour, (560, 380, 900, 700))
    sent = as_telegram_sends(marked_with(original, paint))
    result = find_marks(original, sent)
    assert_region_fits(original, result, drawn_area(original.size, paint))
    assert isinstance(result, MarkResult) and result.enclosed


def test_a_loop_partly_lost_against_its_own_colour_still_marks_its_inside(
    original: Image.Image,
) -> None:
    # the loop's lower part crosses a red rectangle, where a red pen hardly shows
    paint = loop(RED, (420, 260, 760, 560))
    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert_region_fits(original, result, drawn_area(original.size, paint), covered=0.97)
    assert isinstance(result, MarkResult) and result.enclosed


@pytest.mark.parametrize("colour", [RED, WHITE], ids=["red", "white"])
def test_a_scribble_marks_the_area_it_covers(original: Image.Image, colour) -> None:
    paint = scribble(colour, 300, 500)
    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    # the area "covered" drawn here is the zigzag's whole rectangle: its turning corners
    # are a little outside what anyone would call covered
    assert_region_fits(original, result, drawn_area(original.size, paint), covered=0.93)


def test_a_filled_blot_marks_itself_grown_by_a_margin(original: Image.Image) -> None:
    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        draw.ellipse((800, 150, 950, 290), fill=RED if fill is None else fill)

    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    changed = assert_region_fits(original, result, drawn_area(original.size, paint))
    # grown: pixels just outside the blot are part of the region
    ring = (distance_from(drawn_area(original.size, paint)) > 0) & (
        distance_from(drawn_area(original.size, paint)) <= MARGIN_PX - 1.5)
    assert changed[ring].mean() > 0.9


def test_a_tiny_mark_is_grown_to_a_usable_region(original: Image.Image) -> None:
    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        draw.ellipse((600, 400, 616, 416), fill=RED if fill is None else fill)

    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert isinstance(result, MarkResult), result
    changed = changed_pixels(original, result.region)
    assert changed.mean() >= 0.005
    assert changed[drawn_area(original.size, paint)].all()
    ys, xs = np.nonzero(changed)
    assert abs(xs.mean() - 608) < 6 and abs(ys.mean() - 408) < 6, "grown around the dot"


def test_a_tiny_mark_in_a_corner_grows_into_the_picture(original: Image.Image) -> None:
    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        draw.ellipse((0, 0, 14, 14), fill=RED if fill is None else fill)

    result = find_marks(original, marked_with(original, paint))
    assert isinstance(result, MarkResult), result
    changed = changed_pixels(original, result.region)
    assert changed.mean() >= 0.005 and changed[:60, :60].all()


@pytest.mark.parametrize(
    "crop",
    [(0, 27, WIDTH, HEIGHT), (30, 0, WIDTH - 12, HEIGHT), (24, 18, WIDTH - 30, HEIGHT - 20)],
    ids=["top", "sides", "every-side"],
)
def test_a_slightly_cropped_copy_is_still_aligned(original: Image.Image, crop) -> None:
    paint = loop(RED, (300, 300, 560, 520))
    result = find_marks(original, as_telegram_sends(marked_with(original, paint), crop))
    assert_region_fits(original, result, drawn_area(original.size, paint))


def test_outside_the_region_the_composite_is_the_original_pixel_for_pixel(
    original: Image.Image,
) -> None:
    paint = loop(RED, (420, 260, 760, 560))
    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert isinstance(result, MarkResult)
    answer = photo(1024, 768, seed=9)  # a model that repainted everything
    out = composite(original, answer, result.region)
    assert out.size == original.size and out.mode == original.mode
    far = distance_from(drawn_area(original.size, paint)) > EDGE_REACH
    assert np.array_equal(np.asarray(out)[far], np.asarray(original)[far])
    inside = drawn_area(original.size, loop(RED, (480, 320, 700, 500)))
    assert not np.array_equal(np.asarray(out)[inside], np.asarray(original)[inside])


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_the_composite_keeps_the_original_mode(original: Image.Image, mode: str) -> None:
    source = original.convert(mode) if mode != "P" else original.quantize(64)
    paint = loop(RED, (420, 260, 760, 560))
    result = find_marks(source, as_telegram_sends(marked_with(source.convert("RGB"), paint)))
    assert isinstance(result, MarkResult), result
    out = composite(source, ImageOps.invert(original), result.region)
    assert out.mode == source.mode and out.size == source.size
    far = distance_from(drawn_area(original.size, paint)) > EDGE_REACH
    assert np.array_equal(np.asarray(out)[far], np.asarray(source)[far])


def answer_with_a_square(original: Image.Image, square: tuple[int, int, int, int],
                         shift: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """A model answer: recoloured, a green square drawn, shifted, at its own size."""
    answer = ImageOps.autocontrast(original.convert("RGB"), cutoff=5).point(
        lambda v: min(255, int(v * 0.8 + 30)))
    ImageDraw.Draw(answer).rectangle(square, fill=(0, 255, 0))
    answer = answer.transform(answer.size, Image.Transform.AFFINE,
                              (1, 0, -shift[0], 0, 1, -shift[1]), Image.Resampling.BICUBIC)
    return answer.resize(size, Image.Resampling.LANCZOS)


@pytest.mark.parametrize(
    ("shift", "size"),
    [((6, -4), (WIDTH, HEIGHT)), ((0, 0), (1024, 768)), ((-5, 3), (1600, 1200))],
    ids=["shifted", "smaller", "larger-and-shifted"],
)
def test_a_shifted_or_resized_answer_is_realigned(original: Image.Image, shift, size) -> None:
    paint = loop(WHITE, (400, 250, 800, 600))
    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert isinstance(result, MarkResult)
    square = (550, 380, 650, 480)
    out = composite(original, answer_with_a_square(original, square, shift, size),
                    result.region)
    pixels = np.asarray(out)[250:600, 400:800]
    ys, xs = np.nonzero((pixels[..., 1] > 230) & (pixels[..., 0] < 60) & (pixels[..., 2] < 60))
    ys, xs = ys + 250, xs + 400
    assert abs(xs.min() - square[0]) <= 2 and abs(xs.max() - square[2]) <= 2
    assert abs(ys.min() - square[1]) <= 2 and abs(ys.max() - square[3]) <= 2
    found = align_answer(original, answer_with_a_square(original, square, shift, size))
    assert abs(found.origin_x + shift[0]) < 1.5 and abs(found.origin_y + shift[1]) < 1.5
    assert found.score > 0.6


def test_an_answer_with_another_composition_scores_low(original: Image.Image) -> None:
    assert align_answer(original, photo(1024, 768, seed=4)).score < 0.3


def test_another_picture_is_not_a_marked_copy(original: Image.Image) -> None:
    other = marked_with(photo(seed=7), loop(RED, (420, 260, 760, 560)))
    result = find_marks(original, as_telegram_sends(other))
    assert isinstance(result, NotMarked) and result.reason is NoRegion.OTHER_PICTURE


def test_a_copy_with_nothing_drawn_is_not_marked(original: Image.Image) -> None:
    result = find_marks(original, as_telegram_sends(original))
    assert isinstance(result, NotMarked) and result.reason is NoRegion.NOTHING_DRAWN


def test_marks_over_most_of_the_picture_are_not_a_spot(original: Image.Image) -> None:
    def paint(draw: ImageDraw.ImageDraw, fill: int | None) -> None:
        points = [(40 + 60 * k, 40 if k % 2 else HEIGHT - 40) for k in range(19)]
        draw.line(points, fill=RED, width=30)

    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert isinstance(result, NotMarked) and result.reason is NoRegion.MARKS_EVERYWHERE


def test_the_stored_mask_is_small_and_gives_the_same_region_back(
    original: Image.Image,
) -> None:
    result = find_marks(original, as_telegram_sends(
        marked_with(original, loop(RED, (420, 260, 760, 560)))))
    assert isinstance(result, MarkResult)
    data = mask_png(result.region)
    assert data.startswith(b"\x89PNG") and len(data) < 4000
    again = region_from_png(data, original.size)
    assert np.array_equal(again.mask, result.region.mask)
    assert np.array_equal(changed_pixels(original, again), changed_pixels(original, result.region))


def test_the_model_is_shown_the_whole_picture_with_the_region_outlined(
    original: Image.Image,
) -> None:
    paint = loop(RED, (420, 260, 760, 560))
    result = find_marks(original, as_telegram_sends(marked_with(original, paint)))
    assert isinstance(result, MarkResult)
    shown = outlined_copy(original, result.region)
    assert shown.size == original.size and shown.mode == "RGB"
    differs = np.any(np.asarray(shown) != np.asarray(original), axis=2)
    meant = drawn_area(original.size, paint)
    assert differs[meant].mean() > 0.95
    assert not differs[distance_from(meant) > 3 * EDGE_REACH].any()
    small = outlined_copy(original, result.region, max_side=600)
    assert small.size == (600, 450)
    tinted = np.asarray(small)[170:230, 260:330].astype(int)  # inside the loop
    plain = np.asarray(original.resize((600, 450)))[170:230, 260:330].astype(int)
    assert np.abs(tinted - plain).mean() > 15


def test_the_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "marks.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_marks.py"), "--quick", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "region work" in out.read_text()
