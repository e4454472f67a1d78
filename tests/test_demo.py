"""The offline demo model: it must really edit pictures, the way the words say.

Requests are built exactly as the engine sends them (user/model contents with text and
inline PNG parts) and the answers decoded with Pillow, so each test checks pixels a user
would look at.
"""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image

from bot.core.failures import FailureKind
from bot.models.base import (
    Blob,
    Content,
    GenerateRequest,
    GenerateResult,
    ImageModel,
    ModelError,
    Part,
    Usage,
)
from bot.models.demo import DemoModel, parse_instruction

RED = (200, 30, 30)
BLUE = (30, 40, 200)
GREEN = (30, 180, 60)


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def image_part(im: Image.Image) -> Part:
    return Part(image=Blob("image/png", png(im)))


def quadrants(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half red, right half blue, a green square in the top-left corner."""
    w, h = size
    im = Image.new("RGB", size, RED)
    im.paste(BLUE, (w // 2, 0, w, h))
    im.paste(GREEN, (0, 0, 4, 4))
    return im


def scene(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Varied colours and detail, so filters have something to change."""
    w, h = size
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    im.paste((180, 90, 40), (0, 0, w // 2, h // 2))
    im.paste((40, 120, 200), (w // 2, h // 2, w, h))
    for x in range(0, w, 4):
        im.paste((250, 250, 250), (x, h // 2 - 1, x + 2, h // 2 + 1))
    return im


def request(text: str, *images: Image.Image, history: tuple[Content, ...] = ()) -> GenerateRequest:
    parts = (*(image_part(i) for i in images), Part(text=text))
    return GenerateRequest(contents=(*history, Content("user", parts)))


async def run(req: GenerateRequest) -> tuple[GenerateResult, Image.Image]:
    result = await DemoModel().generate(req)
    assert len(result.images) == 1
    blob = result.images[0]
    assert blob.mime_type == "image/png"
    out = Image.open(io.BytesIO(blob.data))
    assert out.format == "PNG"
    out.load()
    return result, out


def rgb(im: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    value = im.convert("RGB").getpixel(xy)
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def pixels(im: Image.Image) -> list[tuple[int, int, int]]:
    data = im.convert("RGB").tobytes()
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]


def edge_energy(im: Image.Image) -> float:
    """Sum of differences between horizontal neighbours: low when blurred."""
    gray = im.convert("L")
    w, h = gray.size
    data = gray.tobytes()
    return float(
        sum(abs(data[y * w + x] - data[y * w + x + 1]) for y in range(h) for x in range(w - 1))
    )


# --------------------------------------------------------------------------- protocol


def test_demo_model_implements_the_image_model_protocol() -> None:
    model: ImageModel = DemoModel()
    assert model.name == "demo"
    assert model.max_input_images == 3


async def test_answer_is_labelled_as_a_demo_and_costs_nothing() -> None:
    result, _ = await run(request("make it black and white", quadrants()))
    assert result.text.startswith("Demo model (offline, no AI):")
    assert "black and white" in result.text
    assert result.usage == Usage()
    assert result.parts[0].text and result.parts[1].image is not None
    await DemoModel().aclose()


# --------------------------------------------------------------------------- operations


async def test_black_and_white_makes_every_pixel_grey() -> None:
    _, out = await run(request("Make it black and white please", scene()))
    assert out.size == (64, 48)
    values = pixels(out)
    assert all(r == g == b for r, g, b in values)
    assert len({p[0] for p in values}) > 10  # still a picture, not a flat colour


async def test_sepia_gives_warm_brown_tones() -> None:
    result, out = await run(request("give it a sepia look", scene()))
    r, g, b = rgb(out, (48, 8))
    assert r > g > b
    assert "sepia" in result.text


async def test_blur_softens_edges_and_a_lot_softens_more() -> None:
    original = edge_energy(scene((128, 96)))
    _, normal = await run(request("blur it", scene((128, 96))))
    _, strong = await run(request("blur it a lot", scene((128, 96))))
    _, slight = await run(request("blur it slightly", scene((128, 96))))
    assert edge_energy(strong) < edge_energy(normal) < edge_energy(slight) < original


async def test_sharpen_increases_edge_contrast() -> None:
    soft = scene((96, 64)).resize((48, 32)).resize((96, 64), Image.Resampling.BILINEAR)
    _, out = await run(request("sharpen", soft))
    assert edge_energy(out) > edge_energy(soft) * 1.1


async def test_rotate_left_swaps_dimensions_and_moves_the_corner() -> None:
    result, out = await run(request("rotate it left", quadrants()))
    assert out.size == (20, 40)
    # counter-clockwise: the top-left corner goes to the bottom-left
    assert rgb(out, (1, 38)) == GREEN
    assert rgb(out, (10, 5)) == BLUE and rgb(out, (10, 35)) == RED
    assert "rotated 90° left" in result.text


async def test_rotate_right_and_180() -> None:
    _, right = await run(request("rotate right", quadrants()))
    assert right.size == (20, 40) and rgb(right, (18, 1)) == GREEN
    _, flipped = await run(request("turn it upside down", quadrants()))
    assert flipped.size == (40, 20) and rgb(flipped, (38, 18)) == GREEN


async def test_rotate_by_any_angle_expands_the_canvas() -> None:
    result, out = await run(request("rotate by 45 degrees", quadrants((40, 40))))
    assert out.width > 50 and out.height > 50
    assert out.mode == "RGBA" and out.getpixel((0, 0)) == (0, 0, 0, 0)
    assert "45° clockwise" in result.text


async def test_mirror_swaps_left_and_right() -> None:
    _, out = await run(request("mirror it", quadrants()))
    assert rgb(out, (38, 1)) == GREEN and rgb(out, (5, 10)) == BLUE


async def test_flip_vertically_swaps_top_and_bottom() -> None:
    _, out = await run(request("flip it vertically", quadrants()))
    assert out.size == (40, 20)
    assert rgb(out, (1, 18)) == GREEN and rgb(out, (5, 1)) == RED


async def test_invert_makes_a_negative() -> None:
    _, out = await run(request("invert the colours", quadrants()))
    assert rgb(out, (5, 10)) == (55, 225, 225)


async def test_brighter_and_darker() -> None:
    _, bright = await run(request("make it brighter", quadrants()))
    _, dark = await run(request("make it darker", quadrants()))
    assert sum(rgb(bright, (30, 10))) > sum(BLUE) > sum(rgb(dark, (30, 10)))


async def test_more_and_less_contrast() -> None:
    def spread(im: Image.Image) -> int:
        return sum(rgb(im, (5, 10))) - sum(rgb(im, (30, 10)))

    base = quadrants()
    _, more = await run(request("more contrast", base))
    _, less = await run(request("less contrast", base))
    assert abs(spread(more)) > abs(spread(base)) > abs(spread(less))


async def test_pixelate_makes_blocks() -> None:
    _, out = await run(request("pixelate it", scene((96, 96))))
    row = [rgb(out, (x, 30)) for x in range(96)]
    runs = sum(1 for a, b in itertools.pairwise(row) if a != b)
    assert runs <= 48  # blocks of at least two identical pixels


async def test_posterize_and_cartoon_reduce_the_palette() -> None:
    original = len(set(pixels(scene((96, 64)))))
    _, poster = await run(request("posterize", scene((96, 64))))
    _, cartoon = await run(request("make it look like a cartoon", scene((96, 64))))
    assert len(set(pixels(poster))) < original
    assert len(set(pixels(cartoon))) < original


async def test_transparency_survives_colour_edits() -> None:
    im = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    im.paste((*RED, 255), (10, 0, 20, 20))
    _, out = await run(request("make it black and white", im))
    assert out.mode == "RGBA"
    assert out.getpixel((2, 2))[3] == 0  # type: ignore[index]
    r, g, b, a = out.getpixel((15, 5))  # type: ignore[misc]
    assert r == g == b and a == 255


# --------------------------------------------------------------------------- combinations


async def test_combined_instructions_apply_in_order() -> None:
    result, out = await run(request("make it black and white and rotate it left", quadrants()))
    assert out.size == (20, 40)
    assert all(r == g == b for r, g, b in pixels(out))
    assert result.text == (
        "Demo model (offline, no AI): converted to black and white, rotated 90° left."
    )


def test_parser_understands_common_phrasings() -> None:
    ops = [
        (s.op, s.arg, s.strength)
        for s in parse_instruction(
            "Blur it slightly, then flip it upside down; also reduce the contrast a lot"
        )
    ]
    assert ops == [
        ("blur", None, "slight"),
        ("mirror", "vertical", "normal"),
        ("contrast", "less", "strong"),
    ]
    assert [s.op for s in parse_instruction("turn it black and white")] == ["grayscale"]
    assert [(s.op, s.arg) for s in parse_instruction("rotate 30° counterclockwise")] == [
        ("rotate", -30.0)
    ]


async def test_two_images_combined_side_by_side() -> None:
    left = Image.new("RGB", (40, 20), RED)
    right = Image.new("RGB", (30, 30), BLUE)
    result, out = await run(request("put them together side by side", left, right))
    # both scaled to the smaller height (20): 40 + 20 wide
    assert out.size == (60, 20)
    assert rgb(out, (10, 10)) == RED and rgb(out, (55, 10)) == BLUE
    assert "2 images side by side" in result.text


async def test_combine_new_photo_with_the_previous_result() -> None:
    earlier = (
        Content("user", (image_part(Image.new("RGB", (20, 20), GREEN)), Part(text="hi"))),
        Content("model", (Part(text="ok"), image_part(Image.new("RGB", (20, 20), RED)))),
    )
    _, out = await run(request("combine", Image.new("RGB", (20, 20), BLUE), history=earlier))
    assert out.size == (40, 20)
    assert rgb(out, (5, 5)) == RED and rgb(out, (35, 5)) == BLUE


async def test_follow_up_without_image_edits_the_models_last_image() -> None:
    history = (
        Content("user", (image_part(quadrants()), Part(text="make it brighter"))),
        Content("model", (Part(text="done"), image_part(Image.new("RGB", (30, 10), RED)))),
    )
    _, out = await run(request("invert it", history=history))
    assert out.size == (30, 10)
    assert rgb(out, (5, 5)) == (55, 225, 225)


# --------------------------------------------------------------------------- no image / errors


async def test_text_only_prompt_draws_a_deterministic_picture_in_named_colours() -> None:
    req = request("a sunset in orange and purple")
    result, out = await run(req)
    _, again = await run(req)
    assert out.tobytes() == again.tobytes()
    assert "orange and purple" in result.text
    top, bottom = rgb(out, (2, 2)), rgb(out, (2, out.height - 3))
    assert top[0] > 230 and top[2] < 40  # orange at the top…
    assert bottom[0] > 100 and bottom[2] > 100 and bottom[1] < 60  # …purple at the bottom
    _, other = await run(request("a quiet forest"))
    assert other.tobytes() != out.tobytes()


async def test_text_only_prompt_honours_the_aspect_ratio() -> None:
    req = GenerateRequest(contents=(Content("user", (Part(text="waves"),)),), aspect_ratio="16:9")
    _, out = await run(req)
    assert out.size == (1024, 576)


async def test_unknown_instruction_lists_what_the_demo_can_do() -> None:
    with pytest.raises(ModelError) as info:
        await DemoModel().generate(request("add a hat to the cat", quadrants()))
    assert info.value.kind is FailureKind.NO_IMAGE
    message = info.value.user_message
    assert message.startswith("The demo model (offline, no AI) only understands:")
    for word in ("black and white", "blur", "rotate", "mirror", "pixelate", "side by side"):
        assert word in message


async def test_combining_needs_two_images() -> None:
    with pytest.raises(ModelError) as info:
        await DemoModel().generate(request("combine them", quadrants()))
    assert "two images" in info.value.user_message


async def test_unreadable_image_is_a_clear_error() -> None:
    bad = GenerateRequest(
        contents=(Content("user", (Part(image=Blob("image/png", b"garbage")), Part(text="blur"))),)
    )
    with pytest.raises(ModelError) as info:
        await DemoModel().generate(bad)
    assert "could not read" in info.value.user_message
