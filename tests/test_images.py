"""Image normalisation: what a user's upload turns into before a model sees it.

Every fixture is generated here with Pillow / pillow-heif, so each test shows exactly what
is in its input (orientation tag, GPS block, alpha, colour mode…).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import pillow_heif
import pytest
from PIL import Image, ImageStat

from bot.kit.images import (
    ImageRejected,
    PreparedImage,
    inspect_output,
    inspect_output_async,
    inspect_stored_output,
    prepare_input,
    prepare_input_async,
    sniff_image_type,
)

RED = (220, 30, 30)
BLUE = (30, 40, 210)
GREEN = (20, 200, 40)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Photo-like content (gradients plus noise), not a flat colour that compresses away."""
    gx = Image.linear_gradient("L").resize((width, height))
    gy = gx.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    noise = Image.effect_noise((width, height), 40 + seed)
    return Image.merge("RGB", (gx, gy, noise))


def halves(
    size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]
) -> Image.Image:
    im = Image.new("RGB", size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    return exif


def opened(prepared: PreparedImage) -> Image.Image:
    im = Image.open(io.BytesIO(prepared.data))
    im.load()
    return im


def px(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    if isinstance(value, tuple):
        return tuple(int(v) for v in value)
    assert isinstance(value, int | float)
    return (int(value),)


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 30) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def rejected(data: bytes, **limits: int) -> str:
    with pytest.raises(ImageRejected) as info:
        prepare_input(data, **limits)
    return info.value.user_message


# --------------------------------------------------------------------------- orientation


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    # Stored 300x200, left half red; orientation 6 means "rotate 90° clockwise to view",
    # so the viewer sees a 200x300 portrait whose top half is red.
    data = encode(halves((300, 200), RED, BLUE), "JPEG", exif=gps_exif(6), quality=95)
    prepared = prepare_input(data)
    im = opened(prepared)
    assert (prepared.width, prepared.height) == im.size == (200, 300)
    assert near(px(im, (100, 40)), RED)
    assert near(px(im, (100, 260)), BLUE)
    assert not im.getexif()  # no orientation left to apply twice


def test_twelve_megapixel_sideways_jpeg_is_downscaled_to_max_side() -> None:
    data = encode(photo(4000, 3000), "JPEG", exif=gps_exif(6), quality=90)
    prepared = prepare_input(data, max_side=1536)
    im = opened(prepared)
    assert prepared.mime_type == "image/jpeg"
    assert im.format == "JPEG"
    # decoded straight at 3/8 size: upright, never above the sending size, and never
    # more than a tenth below it
    assert im.size == (prepared.width, prepared.height) == (1125, 1500)
    assert 0.9 * 1536 <= max(im.size) <= 1536


@pytest.mark.parametrize(("mode", "size"), [("L", (4000, 3000)), ("RGB", (3300, 2200)),
                                            ("CMYK", (4000, 3000))])
def test_big_jpegs_of_every_kind_come_out_near_the_sending_size(
    mode: str, size: tuple[int, int]
) -> None:
    source = photo(*size).convert(mode)
    prepared = prepare_input(encode(source, "JPEG", quality=90), max_side=1536)
    assert 0.9 * 1536 <= max(prepared.width, prepared.height) <= 1536
    im = opened(prepared)
    assert im.mode == ("L" if mode == "L" else "RGB")
    # the picture survives: the mean brightness of a downscale barely moves
    reference = source.convert(im.mode).resize(im.size, Image.Resampling.BICUBIC)
    assert abs(ImageStat.Stat(im).mean[0] - ImageStat.Stat(reference).mean[0]) < 3


@pytest.mark.parametrize(
    ("mode", "source_size", "resample"),
    [
        # after a JPEG draft decode the factor is under 2: bilinear
        ("RGB", (2400, 1800), Image.Resampling.BILINEAR),
        ("RGBA", (2400, 1800), Image.Resampling.BILINEAR),
        ("L", (2400, 1800), Image.Resampling.BILINEAR),
        # a PNG or HEIC straight from a 12 MP camera: bicubic
        ("RGB", (4000, 3000), Image.Resampling.BICUBIC),
    ],
)
def test_parallel_band_resize_is_seamless(
    mode: str, source_size: tuple[int, int], resample: Image.Resampling
) -> None:
    from bot.kit.images import _resize

    source = photo(*source_size).convert(mode)
    expected = source.resize((1536, 1152), resample)
    assert _resize(source, (1536, 1152)).tobytes() == expected.tobytes()


def test_draft_decoding_keeps_longest_side_when_small_factor_would_undershoot() -> None:
    # 2100 / 1000 = 2.1: a 1/2 draft gives 1050 px, still >= 1000; a 1/4 would not.
    data = encode(photo(2100, 900), "JPEG", exif=gps_exif(8))
    prepared = prepare_input(data, max_side=1000)
    assert (prepared.width, prepared.height) == (429, 1000)


def test_xmp_only_orientation_is_applied_too() -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
        b' tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>'
    )
    data = encode(halves((300, 200), RED, BLUE), "JPEG", xmp=xmp)
    im = opened(prepare_input(data))
    assert im.size == (200, 300)
    assert near(px(im, (100, 260)), RED)  # orientation 8: stored left ends at bottom
    assert b"xmpmeta" not in prepare_input(data).data


# --------------------------------------------------------------------------- metadata


def test_gps_and_camera_metadata_stripped_from_small_jpeg_without_reencoding() -> None:
    source = photo(640, 480)
    data = encode(source, "JPEG", exif=gps_exif(1), comment=b"taken at home", quality=85)
    prepared = prepare_input(data)
    assert prepared.mime_type == "image/jpeg"
    assert b"Exif" not in prepared.data and b"PhoneMaker" not in prepared.data
    assert b"taken at home" not in prepared.data
    im = opened(prepared)
    assert not im.getexif()
    assert "comment" not in im.info
    # passed through: the very same pixels, not a second generation of JPEG loss
    original = Image.open(io.BytesIO(data))
    assert im.tobytes() == original.tobytes()
    assert len(prepared.data) < len(data)


def test_gps_stripped_when_reencoding_a_rotated_jpeg() -> None:
    data = encode(photo(800, 600), "JPEG", exif=gps_exif(3), comment=b"secret")
    prepared = prepare_input(data)
    assert b"Exif" not in prepared.data and b"secret" not in prepared.data
    assert not opened(prepared).getexif()


def test_appended_second_image_with_its_own_exif_is_dropped() -> None:
    # Phones append further images (depth map, MPO) after the main image's EOI.
    first = encode(photo(320, 240), "JPEG")
    tail = encode(photo(80, 60, seed=2), "JPEG", exif=gps_exif(1))
    prepared = prepare_input(first + tail)
    assert b"PhoneMaker" not in prepared.data
    assert prepared.data.endswith(b"\xff\xd9")
    assert len(prepared.data) <= len(first)


def test_icc_profile_is_kept_as_colour_information() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(photo(300, 200), "JPEG", icc_profile=srgb, exif=gps_exif(6))
    im = opened(prepare_input(data))
    assert im.info.get("icc_profile") == srgb
    assert not im.getexif()


def test_png_text_and_exif_chunks_stripped() -> None:
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Location", "48.8584 N, 2.2945 E")
    meta.add_itxt("Author", "Someone Private")
    data = encode(photo(200, 100), "PNG", pnginfo=meta, exif=gps_exif(1))
    prepared = prepare_input(data)
    assert prepared.mime_type == "image/png"
    for needle in (b"48.8584", b"Someone", b"eXIf", b"tEXt", b"iTXt", b"PhoneMaker"):
        assert needle not in prepared.data
    assert opened(prepared).tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()


# --------------------------------------------------------------------------- formats


def test_png_with_alpha_stays_png_with_alpha_when_downscaled() -> None:
    im = Image.new("RGBA", (1200, 600), (0, 0, 0, 0))
    im.paste((*GREEN, 255), (600, 0, 1200, 600))
    prepared = prepare_input(encode(im, "PNG"), max_side=300)
    out = opened(prepared)
    assert prepared.mime_type == "image/png" and out.mode == "RGBA"
    assert out.size == (300, 150)
    assert px(out, (20, 75))[3] == 0
    assert px(out, (280, 75)) == (*GREEN, 255)


def test_opaque_png_that_needs_resizing_becomes_jpeg() -> None:
    data = encode(photo(1200, 900).convert("RGBA"), "PNG")
    prepared = prepare_input(data, max_side=600)
    assert prepared.mime_type == "image/jpeg"
    assert (prepared.width, prepared.height) == opened(prepared).size == (600, 450)


def test_palette_png_with_transparency_keeps_it() -> None:
    im = Image.new("P", (40, 40), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (20, 0, 40, 40))
    data = encode(im, "PNG", transparency=0)
    out = opened(prepare_input(data, max_side=20))
    assert out.mode == "RGBA"
    assert px(out, (2, 10))[3] == 0
    assert px(out, (18, 10)) == (0, 0, 255, 255)


def test_heic_from_an_iphone_is_decoded() -> None:
    heic = encode(halves((640, 480), RED, BLUE), "HEIF", quality=90)
    assert sniff_image_type(heic) == "image/heic"
    prepared = prepare_input(heic, max_side=320)
    im = opened(prepared)
    assert prepared.mime_type == "image/jpeg"
    assert im.size == (320, 240)
    assert near(px(im, (40, 120)), RED) and near(px(im, (280, 120)), BLUE)


def test_heic_orientation_applied_once() -> None:
    heic = encode(halves((300, 200), RED, BLUE), "HEIF", exif=gps_exif(6).tobytes())
    im = opened(prepare_input(heic))
    assert im.size == (200, 300)
    assert near(px(im, (100, 40)), RED) and near(px(im, (100, 260)), BLUE)
    assert not im.getexif()


def test_cmyk_jpeg_becomes_rgb_with_the_right_colours() -> None:
    im = Image.new("CMYK", (200, 100), (255, 0, 0, 0))  # pure cyan
    im.paste((0, 255, 255, 0), (100, 0, 200, 100))  # pure red
    prepared = prepare_input(encode(im, "JPEG", quality=95), max_side=100)
    out = opened(prepared)
    assert out.mode == "RGB" and prepared.mime_type == "image/jpeg"
    assert near(px(out, (20, 25)), (0, 255, 255))
    assert near(px(out, (80, 25)), (255, 0, 0))


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), c) for c in (RED, BLUE, GREEN)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = opened(prepare_input(data))
    assert out.size == (60, 40)
    assert near(px(out, (30, 20)), RED)


def test_animated_webp_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), c) for c in (GREEN, RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    prepared = prepare_input(data)
    assert prepared.mime_type == "image/jpeg"
    assert near(px(opened(prepared), (30, 20)), GREEN)


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    row = struct.pack("<64H", *([0] * 32 + [32768] * 32))  # black | mid grey, 16 bits
    im = Image.frombytes("I;16", (64, 64), row * 64)
    out = opened(prepare_input(encode(im, "PNG"), max_side=32))
    assert out.mode == "L"
    assert px(out, (4, 16))[0] < 10
    assert 110 < px(out, (28, 16))[0] < 145  # 128, not 255


def test_animated_png_uses_its_default_image() -> None:
    frames = [Image.new("RGB", (60, 40), c) for c in (BLUE, RED, GREEN)]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:], default_image=True)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    # the still picture viewers without animation show, which chats show as the preview
    assert near(px(opened(prepare_input(data)), (30, 20)), BLUE)


def half_transparent_icon_source() -> Image.Image:
    im = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    im.paste((*GREEN, 255), (128, 0, 256, 256))
    return im


@pytest.mark.parametrize("frame_format", ["png", "bmp"])
def test_ico_file_gives_its_largest_frame_with_transparency(frame_format: str) -> None:
    data = encode(half_transparent_icon_source(), "ICO", sizes=[(16, 16), (48, 48), (256, 256)],
                  bitmap_format=frame_format)  # fmt: skip
    prepared = prepare_input(data)
    out = opened(prepared)
    assert prepared.mime_type == "image/png" and out.size == (256, 256)
    assert px(out, (40, 128))[3] == 0
    assert px(out, (200, 128)) == (*GREEN, 255)


def icon_file(magic: bytes, frames: list[tuple[int, int, bytes]]) -> bytes:
    """An ICO/CUR: a directory of (width, height, payload) frames, payloads after it."""
    offset = 6 + 16 * len(frames)
    directory, payloads = [], []
    for width, height, payload in frames:
        directory.append(struct.pack("<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32,
                                     len(payload), offset))  # fmt: skip
        payloads.append(payload)
        offset += len(payload)
    return magic + struct.pack("<H", len(frames)) + b"".join(directory + payloads)


def cursor_bitmap(size: int, colour: tuple[int, int, int]) -> bytes:
    """A cursor frame: a BMP's DIB with the height doubled, then its 1-bit AND mask."""
    dib = bytearray(encode(Image.new("RGB", (size, size), colour), "BMP")[14:])
    dib[8:12] = struct.pack("<i", 2 * size)
    return bytes(dib) + b"\x00" * (4 * size)


def test_cursor_file_gives_its_largest_frame() -> None:
    data = icon_file(b"\x00\x00\x02\x00", [(16, 16, cursor_bitmap(16, BLUE)),
                                             (32, 32, cursor_bitmap(32, RED))])  # fmt: skip
    out = opened(prepare_input(data))
    assert out.size == (32, 32)
    assert near(px(out, (16, 16)), RED)


def test_cursor_with_a_png_frame_uses_it() -> None:
    frame = encode(halves((48, 48), RED, BLUE), "PNG")
    data = icon_file(b"\x00\x00\x02\x00", [(16, 16, cursor_bitmap(16, GREEN)), (48, 48, frame)])
    out = opened(prepare_input(data))
    assert out.size == (48, 48)
    assert near(px(out, (4, 24)), RED) and near(px(out, (44, 24)), BLUE)


def test_icon_whose_frame_claims_sixty_thousand_squared_pixels_is_refused(
    pillow_opens: list[str],
) -> None:
    data = icon_file(b"\x00\x00\x01\x00", [(256, 256, png_header(60_000, 60_000))])
    assert "too large (60000 × 60000 pixels)" in rejected(data)
    assert pillow_opens == []


def test_icon_pointing_past_its_end_is_damaged() -> None:
    data = encode(half_transparent_icon_source(), "ICO", sizes=[(32, 32), (64, 64)])
    assert "damaged or incomplete" in rejected(data[:-50])


def tiff_with(tag: int, value: object, tagtype: int | None = None) -> bytes:
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[tag] = value
    if tagtype is not None:
        ifd.tagtype[tag] = tagtype
    return encode(Image.new("RGB", (160, 120), RED), "TIFF", tiffinfo=ifd)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: b"\xff\x0a\xfa\x7f\x01\x90\x08" + bytes(64), "JPEG XL images"),
        (lambda: b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(64), "JPEG XL images"),
        (lambda: encode(photo(32, 32), "JPEG2000"), "JPEG 2000 images"),
        (lambda: encode(photo(32, 32), "ICNS"), "macOS icon (ICNS) files"),
        (lambda: b"8BPS\x00\x01" + bytes(64), "Photoshop (PSD) files"),
        (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript (EPS)"),
        (lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (lambda: b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", "Camera RAW"),
        (lambda: b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64), "Camera RAW"),
        (lambda: tiff_with(50706, b"\x01\x04\x00\x00", tagtype=1), "Camera RAW"),  # DNG
        (lambda: tiff_with(254, 1), "Camera RAW"),  # NEF, ARW…: a preview comes first
    ],
)
def test_pictures_in_formats_we_do_not_take_are_named(
    make: Callable[[], bytes], fragment: str
) -> None:
    message = rejected(make())
    assert fragment in message and "not supported here" in message
    assert "JPEG" in message  # what to send instead


def test_bmp_and_tiff_are_accepted() -> None:
    for fmt in ("BMP", "TIFF"):
        prepared = prepare_input(encode(halves((40, 20), RED, BLUE), fmt))
        assert prepared.mime_type == "image/jpeg"
        assert near(px(opened(prepared), (5, 10)), RED)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: encode(photo(8, 8), "JPEG"), "image/jpeg"),
        (lambda: encode(photo(8, 8), "PNG"), "image/png"),
        (lambda: encode(photo(8, 8), "GIF"), "image/gif"),
        (lambda: encode(photo(8, 8), "WEBP"), "image/webp"),
        (lambda: encode(photo(8, 8), "HEIF"), "image/heic"),
        (lambda: encode(photo(8, 8), "AVIF"), "image/avif"),
        (lambda: encode(photo(8, 8), "BMP"), "image/bmp"),
        (lambda: encode(photo(8, 8), "TIFF"), "image/tiff"),
        (lambda: b"%PDF-1.7\n", None),
        (lambda: b"hello", None),
        (lambda: b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", None),
        (lambda: encode(photo(16, 16), "ICO"), "image/x-icon"),
        (lambda: b"\x00\x00\x01\x00" + b"\x00" * 40, None),  # zeros are not an icon
        (lambda: b"", None),
    ],
)
def test_sniff_by_content(make: Callable[[], bytes], expected: str | None) -> None:
    assert sniff_image_type(make()) == expected


# --------------------------------------------------------------------------- refusals


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC right."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas (a classic decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 200
    message = rejected(bomb)
    assert "too large" in message and "megapixels" in message


def test_image_above_our_pixel_limit_but_below_pillows_is_refused_by_size() -> None:
    # 64 MP: Pillow would happily start decoding; our limit says no, from the header alone
    # (a decode attempt would instead fail as "damaged": the pixel data is not there).
    message = rejected(png_header(8000, 8000))
    assert "8000 × 8000" in message and "50 megapixels" in message


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_becomes_the_same_refusal() -> None:
    message = rejected(png_header(10_000, 10_000), max_pixels=500_000_000)
    assert "too large" in message


def test_truncated_jpeg_refused_as_damaged() -> None:
    data = encode(photo(400, 300), "JPEG")
    message = rejected(data[: len(data) // 2])
    assert "damaged or incomplete" in message


def test_truncated_big_jpeg_refused_as_damaged() -> None:
    data = encode(photo(3000, 2000), "JPEG")
    assert "damaged or incomplete" in rejected(data[: len(data) * 2 // 3])


def test_corrupt_png_refused_as_damaged() -> None:
    data = bytearray(encode(photo(200, 100), "PNG"))
    data[60:400] = b"\x00" * 340
    assert "damaged or incomplete" in rejected(bytes(data))


def test_header_only_jpeg_refused() -> None:
    assert "damaged" in rejected(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "looks like a PDF"),
        (b"Hello, this is just a note.\nSecond line.\n", "looks like a text file"),
        ("Grüße aus Köln — schön!".encode(), "looks like a text file"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "ZIP archive"),
        (b"<!DOCTYPE html><html><body>Forbidden</body></html>", "web page"),
        (b"<!DOCTYPE html><html><body><svg><circle r='4'/></svg></body></html>", "web page"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video"),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom", "audio"),
        (bytes(range(256)) * 4, "not an image."),
    ],
)
def test_non_images_refused_with_what_they_look_like(data: bytes, fragment: str) -> None:
    message = rejected(data)
    assert message.startswith("That file is not an image")
    assert fragment in message


def test_image_format_this_pillow_cannot_open_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    avif = encode(photo(16, 16), "AVIF")
    monkeypatch.delitem(Image.OPEN, "AVIF")
    monkeypatch.delitem(Image.OPEN, "HEIF")
    assert rejected(avif) == "AVIF images are not supported here; please send a JPEG or PNG."


def test_empty_file_refused() -> None:
    assert rejected(b"") == "That file is empty."


def test_oversized_byte_count_refused_before_anything_else() -> None:
    data = encode(photo(300, 300), "PNG")
    message = rejected(data, max_bytes=10_000)
    assert "too big" in message and "10 kB" in message


async def test_async_variant_runs_the_same_checks() -> None:
    prepared = await prepare_input_async(encode(photo(900, 300), "WEBP"), max_side=300)
    assert (prepared.width, prepared.height) == (300, 100)
    with pytest.raises(ImageRejected):
        await prepare_input_async(b"%PDF-1.5")


@pytest.mark.slow
async def test_concurrent_preparations_share_the_resize_pool_safely() -> None:
    import asyncio

    uploads = [encode(photo(2400, 1800, seed=k), "BMP") for k in range(3)]  # no draft
    alone = [prepare_input(u, max_side=1200) for u in uploads]
    together = await asyncio.gather(*(prepare_input_async(u, max_side=1200) for u in uploads))
    assert [p.data for p in together] == [p.data for p in alone]
    assert len({p.data for p in alone}) == 3


# --------------------------------------------------------------------------- model output


@pytest.fixture
def pillow_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The formats Pillow opens from here on (each plugin's factory, wrapped to record)."""
    Image.init()
    opened: list[str] = []

    def recording(name: str, factory: Callable[..., Image.Image]) -> Callable[..., Image.Image]:
        def wrapped(*args: object) -> Image.Image:
            opened.append(name)
            return factory(*args)

        return wrapped

    for name, (factory, accept) in list(Image.OPEN.items()):
        monkeypatch.setitem(Image.OPEN, name, (recording(name, factory), accept))
    return opened


def answer_rejected(data: bytes, mime_type: str | None = "image/png") -> str:
    with pytest.raises(ImageRejected) as info:
        inspect_output(data, mime_type)
    return info.value.user_message


def answers() -> dict[str, bytes]:
    """One photo-like answer in every format a chat shows as it is."""
    im = photo(320, 200)
    frames = [im, photo(320, 200, seed=2)]
    return {
        "png": encode(im, "PNG"),
        "png palette": encode(im.quantize(64), "PNG"),
        "png interlaced rgba": encode(im.convert("RGBA"), "PNG", optimize=True),
        "apng": encode(im, "PNG", save_all=True, append_images=frames[1:]),
        "jpeg": encode(im, "JPEG", quality=90),
        "jpeg progressive": encode(im, "JPEG", quality=90, progressive=True),
        "jpeg grey with restart markers": encode(im.convert("L"), "JPEG", restart_marker_rows=1),
        "jpeg cmyk": encode(im.convert("CMYK"), "JPEG"),
        "webp lossy": encode(im, "WEBP", quality=80),
        "webp lossless": encode(im, "WEBP", lossless=True),
        "webp with alpha": encode(im.convert("RGBA"), "WEBP"),
        "webp animated": encode(im, "WEBP", save_all=True, append_images=frames[1:]),
        "gif": encode(im, "GIF"),
        "gif animated": encode(im, "GIF", save_all=True, append_images=frames[1:]),
    }


ANSWERS = answers()


@pytest.mark.parametrize("name", ANSWERS)
def test_sound_answer_is_passed_on_with_its_size_and_never_decoded(
    name: str, pillow_opens: list[str]
) -> None:
    data = ANSWERS[name]
    out = inspect_output(data, "image/png")  # the declared type is only a hint
    assert pillow_opens == []
    assert out.data is data
    expected = Image.open(io.BytesIO(data))
    assert (out.width, out.height) == expected.size == (320, 200)
    assert out.mime_type == Image.MIME[expected.format.upper()]  # type: ignore[union-attr]


def test_output_reports_the_real_type_and_size() -> None:
    data = encode(photo(64, 32), "PNG")
    out = inspect_output(data, "image/jpeg")  # a mislabelled answer
    assert (out.mime_type, out.width, out.height) == ("image/png", 64, 32)
    assert out.data == data and out.extension == "png"


def test_output_in_a_format_chats_cannot_show_becomes_png(pillow_opens: list[str]) -> None:
    out = inspect_output(encode(halves((40, 20), RED, BLUE), "HEIF"), "image/heic")
    assert pillow_opens == ["HEIF"]
    assert out.mime_type == "image/png" and (out.width, out.height) == (40, 20)
    assert near(px(Image.open(io.BytesIO(out.data)).convert("RGB"), (5, 10)), RED)


def png_with_chunk(ctype: bytes, body: bytes) -> bytes:
    """A real PNG with one more chunk (CRC right) before IEND."""
    data = encode(photo(48, 32), "PNG")
    return data[:-12] + chunk(ctype, body) + data[-12:]


def test_answer_the_structure_cannot_vouch_for_is_decoded(pillow_opens: list[str]) -> None:
    # a critical chunk (upper-case first letter) no decoder we know: let Pillow decide
    out = inspect_output(png_with_chunk(b"ZZZz", b"later standard"), "image/png")
    assert pillow_opens == ["PNG"]
    assert (out.mime_type, out.width, out.height) == ("image/png", 48, 32)


def test_jpeg_with_stray_bytes_between_segments_is_left_to_the_decoder(
    pillow_opens: list[str],
) -> None:
    data = encode(photo(48, 32), "JPEG")
    odd = data[:20] + b"\x00\x00" + data[20:]  # after APP0; libjpeg skips them, warning
    out = inspect_output(odd, "image/jpeg")
    assert pillow_opens == ["JPEG"]
    assert (out.mime_type, out.width, out.height) == ("image/jpeg", 48, 32)


def test_ancillary_chunk_needs_no_decode(pillow_opens: list[str]) -> None:
    out = inspect_output(png_with_chunk(b"zzZz", b"private note"), "image/png")
    assert pillow_opens == [] and (out.width, out.height) == (48, 32)


def flipped(data: bytes, index: int) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= 0x01
    return bytes(damaged)


PNG_ANSWER = ANSWERS["png"]
JPEG_ANSWER = ANSWERS["jpeg progressive"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(PNG_ANSWER[: len(PNG_ANSWER) // 2], id="png cut in half"),
        pytest.param(PNG_ANSWER[:-12], id="png without IEND"),
        pytest.param(PNG_ANSWER[:-3], id="png cut inside IEND"),
        pytest.param(PNG_ANSWER[:100], id="png cut inside the first IDAT"),
        pytest.param(flipped(PNG_ANSWER, len(PNG_ANSWER) - 14), id="png IDAT CRC flipped"),
        pytest.param(flipped(PNG_ANSWER, len(PNG_ANSWER) // 2), id="png pixel byte flipped"),
        pytest.param(flipped(PNG_ANSWER, 17), id="png IHDR width flipped"),
        pytest.param(PNG_ANSWER[:33] + PNG_ANSWER[-12:], id="png without IDAT"),
        pytest.param(JPEG_ANSWER[: len(JPEG_ANSWER) // 2], id="jpeg cut in half"),
        pytest.param(JPEG_ANSWER[:-2], id="jpeg without EOI"),
        pytest.param(JPEG_ANSWER[:200], id="jpeg cut in its headers"),
        pytest.param(ANSWERS["jpeg"][:-1], id="baseline jpeg cut by a byte"),
        pytest.param(ANSWERS["webp lossy"][:-10], id="webp cut short"),
        pytest.param(ANSWERS["webp lossless"][:30], id="webp cut in its header"),
        pytest.param(ANSWERS["gif"][: len(ANSWERS["gif"]) // 2], id="gif cut in half"),
        pytest.param(ANSWERS["gif animated"][:-20], id="gif cut in its last frame"),
    ],
)
def test_truncated_or_damaged_answer_is_refused_without_decoding(
    data: bytes, pillow_opens: list[str]
) -> None:
    assert answer_rejected(data) == "The model sent an image that could not be read."


def test_answer_claiming_sixty_thousand_squared_pixels_is_refused_from_its_header(
    pillow_opens: list[str],
) -> None:
    bomb = png_header(60_000, 60_000)  # valid CRCs and zlib stream, 3.6 gigapixels
    assert answer_rejected(bomb) == "The model sent an image that could not be read."
    assert pillow_opens == []


def test_mislabelled_damaged_answer_is_refused_with_the_same_message() -> None:
    jpeg_as_png = JPEG_ANSWER[:-100]
    assert answer_rejected(jpeg_as_png, "image/png") == (
        "The model sent an image that could not be read."
    )
    assert answer_rejected(b"<html>quota exceeded</html>", "image/png") == (
        "The model sent something that is not an image."
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00", png_header(100_000, 100_000)],
)
def test_garbage_from_a_model_is_rejected(data: bytes) -> None:
    with pytest.raises(ImageRejected) as info:
        inspect_output(data, "image/png")
    assert "model" in info.value.user_message


async def test_truncated_output_rejected_async() -> None:
    data = encode(photo(300, 200), "PNG")
    with pytest.raises(ImageRejected):
        await inspect_output_async(data[:-200], "image/png")


@pytest.mark.parametrize("name", ["png", "jpeg", "jpeg progressive", "webp lossy", "gif"])
def test_stored_answer_is_described_from_its_header(name: str, pillow_opens: list[str]) -> None:
    data = ANSWERS[name]
    assert inspect_stored_output(data, "image/png") == inspect_output(data, "image/png")
    assert pillow_opens == []


def test_stored_answer_in_another_format_is_converted_again() -> None:
    heic = encode(halves((40, 20), RED, BLUE), "HEIF")
    out = inspect_stored_output(heic, "image/heic")
    assert (out.mime_type, out.width, out.height) == ("image/png", 40, 20)
    with pytest.raises(ImageRejected):
        inspect_stored_output(b"\x89PNG\r\n\x1a\n garbage", "image/png")


def test_heif_plugin_registered_at_import() -> None:
    assert "HEIF" in Image.registered_extensions().values()
    assert pillow_heif.__version__
