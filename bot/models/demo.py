"""An offline stand-in for the image model, so the bot can be tried without a key.

``chatbrush --demo`` (and the test-suite) need a model that behaves like the real one from
the turn service's point of view: it takes the same contents, answers with text plus a PNG, and
fails with :class:`ModelError` when it cannot help. It really edits pictures with Pillow,
following a small fixed vocabulary of instructions, and says plainly in every answer that
it is a demo and not AI.
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageColor, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from bot.core.failures import FailureKind
from bot.kit.i18n import N_, _
from bot.models.base import (
    Blob,
    Content,
    GenerateRequest,
    GenerateResult,
    ModelError,
    Part,
    Picture,
    Usage,
)

LABEL: Final = "Demo model (offline, no AI)"
CAPABILITIES: Final = (
    "black and white, sepia, blur (slightly / a lot), sharpen, rotate (left, right, 180, "
    "by N degrees), mirror or flip (horizontal / vertical), invert, brighter, darker, "
    "more or less contrast, pixelate, posterize or cartoon, and combining several images "
    "side by side; with no image at all it draws an abstract picture from your words"
)
#: working images are capped so a demo answer stays quick on a small machine
_MAX_SIDE: Final = 2048
_COMBINE_HEIGHT: Final = 1024
_GENERATED_LONG_SIDE: Final = 1024


@dataclass(frozen=True)
class Step:
    """One operation found in the instruction, with its parameter."""

    op: str
    arg: float | str | None = None
    strength: str = "normal"  # "slight", "normal" or "strong"


# --------------------------------------------------------------------------- parsing

_PHRASES: Final = (
    (r"\bblack\s*(?:and|&|n|-and-)\s*white\b|\bb\s*[&/]\s*w\b", " blackwhite "),
    (r"\bside[\s-]+by[\s-]+side\b", " sidebyside "),
    (r"\bcounter[\s-]*clockwise\b|\banti[\s-]*clockwise\b|\bccw\b", " ccw "),
)
_CLAUSE_SPLIT: Final = re.compile(r"[,;.!?\n]|\band\b|\bthen\b|\balso\b|\bplus\b|&")

_STRONG: Final = re.compile(
    r"\b(a lot|lots|very|heavily|heavy|strong\w*|much|really|extremely|super|maximum|max)\b"
)
_SLIGHT: Final = re.compile(
    r"\b(slight\w*|a bit|a little|little|subtl\w*|gentl\w*|lightly|somewhat|a touch)\b"
)

_RE: Final = {
    "combine": re.compile(
        r"\b(combin\w*|fuse|fusion|merg\w*|sidebyside|together|collage|stitch\w*|join\w*)\b"
    ),
    "grayscale": re.compile(
        r"\b(blackwhite|gr[ae]y\s*scale\w*|gr[ae]y|monochrom\w*|mono|desaturat\w*|"
        r"colou?rless|no colou?rs?)\b"
    ),
    "sepia": re.compile(r"\b(sepia|vintage|old[\s-]?fashioned|antique)\b"),
    "blur": re.compile(r"\b(blur\w*|out of focus|defocus\w*|soften\w*)\b"),
    "sharpen": re.compile(r"\b(sharpen\w*|sharper|crisp\w*)\b"),
    "rotate": re.compile(
        r"\brotat\w*|\bturn\w*\b.*\b(left|right|clockwise|ccw|around|sideways|upside)\b"
        r"|\bupside[\s-]*down\b"
    ),
    "mirror": re.compile(r"\b(mirror\w*|flip\w*|reflect\w*)\b"),
    "invert": re.compile(r"\b(invert\w*|negative|inverse|reverse the colou?rs)\b"),
    "brightness": re.compile(r"\b(bright\w*|lighter|lighten\w*|dark\w*|dim|dimm\w*)\b"),
    "contrast": re.compile(r"\bcontrast\w*\b"),
    "pixelate": re.compile(r"\b(pixel\w*|8[\s-]?bit|mosaic|censor\w*|blocky)\b"),
    "posterize": re.compile(
        r"\b(posteri[sz]\w*|poster|cartoon\w*|comic\w*|pop[\s-]?art|toon\w*)\b"
    ),
}


def _normalise(text: str) -> str:
    text = text.lower().replace("°", " degrees ")
    for pattern, repl in _PHRASES:
        text = re.sub(pattern, repl, text)
    return text


def _strength(clause: str) -> str:
    if _SLIGHT.search(clause):
        return "slight"
    if _STRONG.search(clause):
        return "strong"
    return "normal"


def _rotation(clause: str) -> float:
    """Clockwise degrees asked for in a clause ("left" is -90, "upside down" 180)."""
    left = re.search(r"\b(left|ccw)\b", clause) is not None
    number = re.search(r"(-?\d+(?:\.\d+)?)\s*(?:degrees?|deg)?", clause)
    if number:
        angle = float(number.group(1))
        return -angle if left else angle
    if re.search(r"\b(upside|around|180)\b", clause):
        return 180.0
    return -90.0 if left else 90.0


def _clause_steps(clause: str) -> list[tuple[int, Step]]:
    found: list[tuple[int, Step]] = []
    strength = _strength(clause)
    flip = _RE["mirror"].search(clause)
    for op, pattern in _RE.items():
        match = pattern.search(clause)
        if not match:
            continue
        if op == "rotate" and flip and not re.search(r"\b(rotat\w*|turn\w*)\b", clause):
            continue  # "flip it upside down" is a vertical flip, not a rotation
        step: Step
        if op == "rotate":
            step = Step("rotate", _rotation(clause))
        elif op == "mirror":
            vertical = re.search(r"\b(vertical\w*|upside|top|bottom|up)\b", clause)
            step = Step("mirror", "vertical" if vertical else "horizontal")
        elif op == "brightness":
            darker = re.search(r"\b(dark\w*|dim|dimm\w*)\b", clause) or re.search(
                r"\b(less|lower\w*|reduc\w*|decreas\w*|down)\b.*\bbright", clause
            )
            step = Step("darker" if darker else "brighter", strength=strength)
        elif op == "contrast":
            less = re.search(
                r"\b(less|lower\w*|reduc\w*|decreas\w*|low|soft\w*|flat\w*|weaker)\b", clause
            )
            step = Step("contrast", "less" if less else "more", strength)
        elif op == "posterize":
            cartoon = re.search(r"\b(cartoon\w*|comic\w*|toon\w*)\b", clause)
            step = Step("posterize", "cartoon" if cartoon else None, strength)
        else:
            step = Step(op, strength=strength)
        found.append((match.start(), step))
    return sorted(found, key=lambda item: item[0])


def parse_instruction(text: str) -> list[Step]:
    """The operations an instruction asks for, in the order they are mentioned."""
    steps: list[Step] = []
    for clause in _CLAUSE_SPLIT.split(_normalise(text)):
        steps.extend(step for _position, step in _clause_steps(clause))
    return steps


# --------------------------------------------------------------------------- editing


def _colour(im: Image.Image, fn: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply a colour operation to the RGB channels only, keeping transparency as is."""
    if im.mode == "RGBA":
        out = fn(im.convert("RGB")).convert("RGB")
        out.putalpha(im.getchannel("A"))
        return out
    return fn(im).convert("RGB")


def _scaled(im: Image.Image, base: float, strength: str) -> float:
    factor = {"slight": 0.4, "normal": 1.0, "strong": 3.0}[strength]
    # relative to the picture's size, with a floor so small images still change visibly
    return factor * max(1.5, max(im.size) / 400 * base)


def _degrees(angle: float) -> str:
    return f"{angle:g}°"


#: clockwise degrees -> Pillow transpose (whose ROTATE_n turns counter-clockwise)
_QUARTER_TURNS: Final = {
    90.0: (Image.Transpose.ROTATE_270, "rotated 90° right"),
    180.0: (Image.Transpose.ROTATE_180, "rotated 180°"),
    270.0: (Image.Transpose.ROTATE_90, "rotated 90° left"),
}


def _rotate(im: Image.Image, clockwise: float) -> tuple[Image.Image, str]:
    angle = clockwise % 360
    if angle == 0:
        return im, "left the rotation as it was (a full turn)"
    if angle in _QUARTER_TURNS:  # lossless
        method, what = _QUARTER_TURNS[angle]
        return im.transpose(method), what
    # Pillow turns counter-clockwise; corners the picture leaves are transparent.
    out = im.convert("RGBA").rotate(
        -clockwise, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0, 0)
    )
    way = "clockwise" if clockwise > 0 else "counter-clockwise"
    return out, f"rotated {_degrees(abs(clockwise))} {way}"


def _sepia(rgb: Image.Image) -> Image.Image:
    gray = ImageOps.grayscale(rgb)
    return ImageOps.colorize(gray, black="#20140a", white="#fff4dc", mid="#a27c4f")


def _cartoon(rgb: Image.Image, bits: int) -> Image.Image:
    smooth = rgb.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.SMOOTH_MORE)
    flat = ImageOps.posterize(smooth, bits)
    edges = ImageOps.grayscale(smooth).filter(ImageFilter.FIND_EDGES)
    lines = edges.point(lambda v: 0 if v > 40 else 255)
    return Image.composite(flat, Image.new("RGB", rgb.size, (20, 20, 20)), lines)


def apply_step(im: Image.Image, step: Step) -> tuple[Image.Image, str]:
    """One operation on an RGB/RGBA image, and a few words on what it did."""
    s = step.strength
    word = {"slight": "slightly ", "normal": "", "strong": "strongly "}[s]
    if step.op == "grayscale":
        return _colour(im, ImageOps.grayscale), "converted to black and white"
    if step.op == "sepia":
        return _colour(im, _sepia), "gave it a sepia tone"
    if step.op == "blur":
        radius = _scaled(im, 2.5, s)
        return im.filter(ImageFilter.GaussianBlur(radius)), f"{word}blurred it"
    if step.op == "sharpen":
        percent = {"slight": 80, "normal": 160, "strong": 320}[s]
        mask = ImageFilter.UnsharpMask(radius=2, percent=percent, threshold=2)
        return _colour(im, lambda rgb: rgb.filter(mask)), f"{word}sharpened it"
    if step.op == "rotate":
        return _rotate(im, float(step.arg) if step.arg is not None else 90.0)
    if step.op == "mirror":
        if step.arg == "vertical":
            return im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), "flipped it vertically"
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "mirrored it horizontally"
    if step.op == "invert":
        return _colour(im, ImageOps.invert), "inverted the colours"
    if step.op in ("brighter", "darker"):
        up = {"slight": 1.15, "normal": 1.35, "strong": 1.8}[s]
        down = {"slight": 0.85, "normal": 0.7, "strong": 0.45}[s]
        factor = up if step.op == "brighter" else down
        out = _colour(im, lambda rgb: ImageEnhance.Brightness(rgb).enhance(factor))
        return out, f"made it {word}{step.op}"
    if step.op == "contrast":
        more = {"slight": 1.2, "normal": 1.5, "strong": 2.2}[s]
        less = {"slight": 0.8, "normal": 0.6, "strong": 0.35}[s]
        factor = more if step.arg == "more" else less
        out = _colour(im, lambda rgb: ImageEnhance.Contrast(rgb).enhance(factor))
        return out, f"gave it {word}{step.arg} contrast"
    if step.op == "pixelate":
        cells = {"slight": 96, "normal": 48, "strong": 24}[s]
        block = max(2, round(max(im.size) / cells))
        small = im.resize(
            (max(1, im.width // block), max(1, im.height // block)), Image.Resampling.BOX
        )
        return small.resize(im.size, Image.Resampling.NEAREST), f"{word}pixelated it"
    if step.op == "posterize":
        bits = {"slight": 4, "normal": 3, "strong": 2}[s]
        if step.arg == "cartoon":
            return _colour(im, lambda rgb: _cartoon(rgb, bits)), "gave it a cartoon look"
        return _colour(im, lambda rgb: ImageOps.posterize(rgb, bits)), "posterized it"
    raise ValueError(f"unknown demo operation {step.op!r}")


def _side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    height = min(_COMBINE_HEIGHT, *(im.height for im in images))
    scaled = [
        im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
        for im in images
    ]
    mode = "RGBA" if any(im.mode == "RGBA" for im in scaled) else "RGB"
    canvas = Image.new(mode, (sum(im.width for im in scaled), height))
    x = 0
    for im in scaled:
        canvas.paste(im.convert(mode), (x, 0))
        x += im.width
    return canvas


# --------------------------------------------------------------------------- drawing


def _named_colours(text: str) -> dict[str, tuple[int, int, int]]:
    """CSS colour names in the prompt ("sky blue" counts as "skyblue"), in order."""
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, tuple[int, int, int]] = {}
    i = 0
    while i < len(words):
        for width in (3, 2, 1):
            if i + width > len(words):
                continue
            name = "".join(words[i : i + width])
            if name in ImageColor.colormap:
                rgb = ImageColor.getrgb(name)
                found.setdefault(" ".join(words[i : i + width]), (rgb[0], rgb[1], rgb[2]))
                i += width - 1
                break
        i += 1
    return found


def _hash_colours(digest: bytes, count: int) -> list[tuple[int, int, int]]:
    colours = []
    for k in range(count):
        hue = digest[k * 3] / 255
        sat = 0.45 + digest[k * 3 + 1] / 255 * 0.5
        val = 0.55 + digest[k * 3 + 2] / 255 * 0.45
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _canvas_size(aspect_ratio: str | None) -> tuple[int, int]:
    try:
        w, h = (float(x) for x in (aspect_ratio or "4:3").split(":"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        w, h = 4.0, 3.0
    side = _GENERATED_LONG_SIDE
    return (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)


def draw_picture(prompt: str, aspect_ratio: str | None = None) -> tuple[Image.Image, str]:
    """A deterministic abstract picture: the same words always give the same image."""
    digest = hashlib.sha512(prompt.strip().lower().encode()).digest()  # 64 bytes of choices
    named = _named_colours(prompt)
    colours = (list(named.values()) + _hash_colours(digest, 4))[:4]
    size = _canvas_size(aspect_ratio)
    top = Image.new("RGB", size, colours[0])
    bottom = Image.new("RGB", size, colours[1 % len(colours)])
    mask = Image.linear_gradient("L").resize(size)
    im = Image.composite(bottom, top, mask).convert("RGBA")
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = size
    for k in range(3 + digest[12] % 4):
        b = digest[13 + k * 4 : 17 + k * 4]
        cx, cy = b[0] / 255 * w, b[1] / 255 * h
        r = (0.08 + b[2] / 255 * 0.22) * min(w, h)
        fill = (*colours[2 + k % 2], 150 + b[3] % 100)
        box = (cx - r, cy - r, cx + r, cy + r)
        if b[3] % 2:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    im = Image.alpha_composite(im, overlay).convert("RGB")
    names = list(named)[:2]
    about = f" in {' and '.join(names)}" if names else ""
    return im, f"drew an abstract picture{about} from your words (the demo cannot really draw)"


# --------------------------------------------------------------------------- the model


def _instruction(contents: Sequence[Content]) -> str:
    for content in reversed(contents):
        if content.role == "user":
            return " ".join(p.text for p in content.parts if p.text and not p.thought).strip()
    return ""


def _blobs(content: Content) -> list[Picture]:
    return [p.image for p in content.parts if p.image is not None and not p.thought]


def _pick_images(contents: Sequence[Content], limit: int) -> tuple[list[Picture], int]:
    """The newest user turn's images, else the newest image anywhere (usually the
    model's last result); also how many images the newest user turn carried."""
    newest_user = next((c for c in reversed(contents) if c.role == "user"), None)
    own = _blobs(newest_user) if newest_user else []
    if len(own) >= 2:
        return own[-limit:], len(own)
    recent: list[Picture] = []
    for content in reversed(contents):
        recent.extend(reversed(_blobs(content)))
        if len(recent) >= limit:
            break
    return list(reversed(recent[:limit])), len(own)


def _open(blob: Blob) -> Image.Image:
    im: Image.Image
    try:
        opened = Image.open(io.BytesIO(blob.data))
        opened.load()
        im = ImageOps.exif_transpose(opened)
    except Exception as exc:
        raise ModelError(
            FailureKind.BAD_REQUEST,
            f"{LABEL}: could not read that image.",
            detail=f"demo model: {exc!r}",
        ) from None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    im = im.convert("RGBA" if has_alpha else "RGB")
    if max(im.size) > _MAX_SIDE:
        im.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
    return im


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _not_understood() -> ModelError:
    return ModelError(
        FailureKind.NO_IMAGE,
        _("The demo model (offline, no AI) only understands: {capabilities}.").format(
            capabilities=CAPABILITIES),
        detail="demo model: no known operation in the instruction",
    )


def _work(
    instruction: str, blobs: Sequence[Blob], own_count: int, aspect_ratio: str | None
) -> tuple[bytes, str]:
    """The blocking part: decode, edit, encode (runs in a worker thread)."""
    steps = parse_instruction(instruction)
    done: list[str] = []
    if not blobs:
        im, what = draw_picture(instruction, aspect_ratio)
        done.append(what)
        steps = [s for s in steps if s.op != "combine"]
    elif any(s.op == "combine" for s in steps):
        if len(blobs) < 2:
            raise ModelError(
                FailureKind.NO_IMAGE,
                N_("The demo model needs at least two images to put side by side."),
                detail="demo model: combine with one image",
            )
        # the user's own images, or their one new image next to the latest before it
        chosen = blobs if own_count >= 2 else blobs[-2:]
        im = _side_by_side([_open(b) for b in chosen])
        done.append(f"placed {len(chosen)} images side by side")
        steps = [s for s in steps if s.op != "combine"]
    else:
        if not steps:
            raise _not_understood()
        im = _open(blobs[-1])
        if own_count > 1:
            done.append(f"took the last of your {own_count} images")
    for step in steps:
        im, what = apply_step(im, step)
        done.append(what)
    return _png(im), f"{LABEL}: {', '.join(done)}."


class DemoModel:
    """Edits images locally with Pillow; implements :class:`bot.models.base.ImageModel`."""

    name = "demo"
    max_input_images = 3

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if request.on_send is not None:
            await request.on_send()
        instruction = _instruction(request.contents)
        pictures, own_count = _pick_images(request.contents, self.max_input_images)
        blobs = [Blob(p.mime_type, await p.read()) for p in pictures]
        png, text = await asyncio.to_thread(
            _work, instruction, blobs, own_count, request.aspect_ratio
        )
        return GenerateResult(
            parts=(Part(text=text), Part(image=Blob(mime_type="image/png", data=png))),
            usage=Usage(),
            model_version="demo",
        )

    async def aclose(self) -> None:
        """Nothing to release: the demo holds no connections."""
