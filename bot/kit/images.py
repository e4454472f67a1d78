"""Image normalisation: every picture a user sends is checked and made safe to forward.

Chat apps hand us whatever people upload: iPhone HEIC files, Windows icons (their largest
frame is used), sideways photos that rely on an EXIF orientation tag, 50-megapixel camera
JPEGs, camera RAW files, PDFs named ``photo.jpg``, truncated downloads, and now and then a
decompression bomb. :func:`prepare_input` turns all of that
into one upright JPEG or PNG no larger than the sending size, with the metadata (GPS!)
stripped, or refuses it with :class:`ImageRejected` whose ``user_message`` can be shown
as is. :func:`inspect_output` does the matching check for what a model sends back, from
the file's structure alone unless the picture must be converted for the chat.

Speed matters because the engine runs this for every incoming image: JPEGs are decoded in
libjpeg's reduced-size "draft" mode, and small JPEG/PNG files that need no change are
sent as they are, minus their metadata segments, after a full decode has proved them
sound.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import pillow_heif
import simplejpeg
from PIL import Image

from bot.kit.formatting import readable_size
from bot.kit.i18n import N_, _
from bot.kit.image_structure import (
    PNG_SIGNATURE,
    MalformedImage,
    icon_frames,
    jpeg_segments,
    looks_like_icon,
    png_chunks,
    png_dimensions,
    read_jpeg,
    read_layout,
    read_png,
)
from bot.kit.image_types import OutputImage

pillow_heif.register_heif_opener()

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE: Final = 1536
DEFAULT_MAX_BYTES: Final = 20_000_000
DEFAULT_MAX_PIXELS: Final = 50_000_000
JPEG_QUALITY: Final = 90
#: files at most this big that need no change are forwarded without re-encoding
PASSTHROUGH_MAX_BYTES: Final = 2_000_000

#: what a model may send back and a chat platform displays directly
_SENDABLE: Final = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})

#: sniffed type -> the Pillow plugins allowed to open it (nothing else gets a chance)
_PIL_FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "image/jpeg": ("JPEG", "MPO"),
    "image/png": ("PNG",),
    "image/gif": ("GIF",),
    "image/webp": ("WEBP",),
    "image/heic": ("HEIF",),
    "image/heif": ("HEIF",),
    "image/avif": ("AVIF", "HEIF"),
    "image/bmp": ("BMP",),
    "image/tiff": ("TIFF",),
    "image/x-icon": ("ICO",),
    "image/x-cursor": ("CUR",),
}
_ICON_KINDS: Final = frozenset({"image/x-icon", "image/x-cursor"})

_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})

#: EXIF orientation -> the transpose that makes the picture upright (as ImageOps does)
_ORIENTATION_FIX: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION: Final = 0x0112

_DAMAGED: Final = N_("That image is damaged or incomplete and could not be read; please send "
                     "it again.")


class ImageRejected(Exception):
    """An image we will not use; ``user_message`` is a short reason fit for the chat, in
    the user's language (a marked constant is translated here)."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = _(user_message)
        self.detail = detail


@dataclass(frozen=True)
class PreparedImage:
    """An upright, metadata-free JPEG or PNG ready to send to a model."""

    data: bytes
    mime_type: str
    width: int
    height: int


# --------------------------------------------------------------------------- sniffing


def _ftyp_brands(data: bytes) -> list[bytes]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box (HEIC, AVIF, MP4, MOV)."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return []
    size = min(int.from_bytes(data[0:4], "big"), len(data), 256)
    brands = [data[8:12]]
    brands.extend(data[i : i + 4] for i in range(16, size - 3, 4))
    return brands


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of an image we accept, judged by magic bytes; None for anything else.

    File names and declared MIME types lie (Telegram documents, Slack uploads), so only the
    content decides which decoder may look at it.
    """
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    ):
        return "image/bmp"
    if looks_like_icon(data):
        return "image/x-icon" if data[2] == 1 else "image/x-cursor"
    brands = _ftyp_brands(data)
    if brands:
        major = brands[0]
        for group, mime in (
            (_HEIC_BRANDS, "image/heic"),
            (_AVIF_BRANDS, "image/avif"),
            (_HEIF_BRANDS, "image/heif"),
        ):
            if major in group:
                return mime
        for group, mime in (
            (_AVIF_BRANDS, "image/avif"),
            (_HEIC_BRANDS, "image/heic"),
            (_HEIF_BRANDS, "image/heif"),
        ):
            if any(b in group for b in brands[1:]):
                return mime
    return None


def _is_video_ftyp(data: bytes) -> bool:
    brands = _ftyp_brands(data)
    return bool(brands) and brands[0].startswith(
        (b"isom", b"iso", b"mp4", b"avc1", b"qt  ", b"M4V", b"3gp", b"3g2", b"dash", b"mmp4")
    )


_CAMERA_RAW: Final = N_(
    "Camera RAW files are not supported here; please send a JPEG (cameras and phone apps "
    "can export one)."
)
#: leading bytes of camera RAW formats that are not TIFF underneath (those are told apart
#: once opened, see :func:`_is_camera_raw`): Fujifilm, Olympus, Panasonic, Sigma, old Canon
_RAW_MAGIC: Final = (
    b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FOVb",
    b"II\x1a\x00\x00\x00HEAPCCDR",
)  # fmt: skip


def _unsupported_image(data: bytes) -> str | None:
    """The refusal for a picture in a format we recognise but do not take, naming it."""
    head = data[:512]
    low = head.lower().lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(_RAW_MAGIC) or _ftyp_brands(data)[:1] == [b"crx "]:  # crx: Canon CR3
        return _CAMERA_RAW
    named: list[tuple[bool, str]] = [
        (head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")),
         N_("JPEG XL images")),
        (
            head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")),
            N_("JPEG 2000 images"),
        ),
        (head.startswith(b"8BPS"), N_("Photoshop (PSD) files")),
        (head.startswith(b"icns"), N_("macOS icon (ICNS) files")),
        (head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")), N_("PostScript (EPS) files")),
        (
            b"<svg" in low and not low.startswith((b"<!doctype html", b"<html")),
            N_("SVG drawings"),
        ),
    ]
    for matched, what in named:
        if matched:
            return _("{what} are not supported here; please send a JPEG or PNG.").format(
                what=_(what))
    return None


def _describe_non_image(data: bytes) -> str:
    """A few words on what a refused file seems to be, so the user knows what went wrong."""
    unsupported = _unsupported_image(data)
    if unsupported:
        return unsupported
    head = data[:512]
    low = head.lower().lstrip(b"\xef\xbb\xbf \t\r\n")
    known: list[tuple[bool, str]] = [
        (head.startswith(b"%PDF"), N_("a PDF")),
        (head.startswith(b"PK\x03\x04"), N_("a ZIP archive or Office document")),
        (head.startswith((b"\x1f\x8b", b"Rar!", b"7z\xbc\xaf", b"BZh")), N_("an archive")),
        (head.startswith((b"\x7fELF", b"MZ")), N_("a program")),
        (head.startswith(b"\x1a\x45\xdf\xa3") or _is_video_ftyp(data), N_("a video")),
        (_ftyp_brands(data)[:1] == [b"M4A "], N_("an audio file")),
        (head.startswith(b"RIFF") and head[8:12] == b"AVI ", N_("a video")),
        (
            head.startswith((b"ID3", b"OggS", b"fLaC", b"\xff\xfb", b"\xff\xf3"))
            or (head.startswith(b"RIFF") and head[8:12] == b"WAVE"),
            "an audio file",
        ),
        (low.startswith((b"<!doctype html", b"<html")), N_("a web page")),
    ]
    for matched, what in known:
        if matched:
            return _("That file is not an image (it looks like {what}).").format(what=_(what))
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the 4096th byte is still text
        text = data[:4096].decode("utf-8", errors="ignore")
        if len(text) < min(len(data), 4096) - 4:
            text = ""
    if text and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text):
        return _("That file is not an image (it looks like a text file).")
    return _("That file is not an image.")


# --------------------------------------------------------------------------- opening


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        _("That image is too large ({width} × {height} pixels); the limit is {limit} "
          "megapixels.").format(width=width, height=height, limit=f"{max_pixels / 1e6:g}"),
        detail=f"{width}x{height} > {max_pixels} pixels",
    )


def _largest_icon_png(data: bytes, max_pixels: int) -> bytes | None:
    """The largest frame of an ICO/CUR when it is a PNG (opened as one then), else None.

    Every frame's size is checked first: Pillow decodes an icon's frame as it opens it.
    """
    try:
        frames = icon_frames(data)
    except MalformedImage as exc:
        raise ImageRejected(_DAMAGED, detail=str(exc)) from None
    for frame in frames:
        if frame.width * frame.height > max_pixels:
            raise _too_many_pixels(frame.width, frame.height, max_pixels)
    largest = max(frames, key=lambda f: (f.width * f.height, f.bits))
    return data[largest.start : largest.end] if largest.is_png else None


def _is_camera_raw(data: bytes, im: Image.Image) -> bool:
    """A TIFF that is really a camera RAW: DNG, Canon CR2, or a first page that is only
    a reduced-size preview (Nikon NEF, Sony ARW, Pentax PEF…) of sensor data we cannot
    develop."""
    tags = getattr(im, "tag_v2", {})
    try:
        preview = int(tags.get(254, 0)) & 1  # NewSubfileType: "reduced-resolution image"
    except (TypeError, ValueError):
        preview = 0
    return data[8:10] == b"CR" or 50706 in tags or bool(preview)  # 50706: DNGVersion


def _open_checked(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    """Open (header only) with the plugins for ``kind``; refuse bombs before any decoding.

    An icon (ICO, CUR) gives its largest frame.
    """
    if kind in _ICON_KINDS:
        png_frame = _largest_icon_png(data, max_pixels)
        if png_frame is not None:
            return _open_checked(png_frame, "image/png", max_pixels)
    if kind == "image/png":
        try:
            read_png(data)  # Pillow checks no IDAT checksum: damage would decode silently
        except MalformedImage as exc:
            raise ImageRejected(_DAMAGED, detail=str(exc)) from None
    formats = _PIL_FORMATS[kind]
    Image.init()
    if not any(f in Image.OPEN for f in formats):  # e.g. a Pillow built without AVIF
        label = kind.removeprefix("image/").upper()
        raise ImageRejected(
            _("{format} images are not supported here; please send a JPEG or PNG.").format(
                format=label),
            detail=f"no Pillow plugin among {formats}",
        )
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit fired first (the warning arrives as an exception when
        # warnings are errors); the header parse has not decoded pixels yet.
        raise ImageRejected(
            _("That image is too large; the limit is {limit} megapixels.").format(
                limit=f"{max_pixels / 1e6:g}"),
            detail=str(exc),
        ) from None
    except Exception as exc:  # untrusted bytes: any parser failure means "unreadable"
        raise ImageRejected(_DAMAGED, detail=f"{kind}: {exc!r}") from None
    if kind == "image/tiff" and _is_camera_raw(data, im):
        raise ImageRejected(_CAMERA_RAW, detail="tiff: camera raw")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageRejected(_DAMAGED, detail=f"{kind}: empty size {im.size}")
    if width * height > max_pixels:
        raise _too_many_pixels(width, height, max_pixels)
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block must not cost the user their photo
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_FIX else 1


def _to_unit_range(im: Image.Image) -> Image.Image:
    """16/32-bit grey and float images scaled to 8 bits (``convert("L")`` would clip)."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    top = float(im.getextrema()[1])  # type: ignore[arg-type]
    if im.mode == "F" and top <= 1.0:
        return im.point(lambda v: v * 255).convert("L")
    if top <= 255:
        return im.convert("L")
    return im.point(lambda v: v / 256).convert("L")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any decoded mode to L, RGB or RGBA (the only ones we encode)."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA"):
        if "transparency" in im.info and mode != "RGBA":
            return im.convert("RGBA")
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_unit_range(im)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "La", "RGBa", "RGBX"):
        return im.convert("RGBA" if mode != "RGBX" else "RGB")
    # CMYK (Pillow undoes Adobe's inverted CMYK on decode), YCbCr, LAB, HSV
    return im.convert("RGB")


def _drop_opaque_alpha(im: Image.Image) -> Image.Image:
    """An alpha channel that is everywhere opaque is not transparency: drop it."""
    if im.mode == "RGBA" and im.getchannel("A").getextrema() == (255, 255):
        return im.convert("RGB")
    return im


def _icc_for(mode: str, icc: bytes | None) -> bytes | None:
    """Keep an ICC profile only when its colour space matches the encoded pixels."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    if (space == b"RGB " and mode in ("RGB", "RGBA")) or (space == b"GRAY" and mode == "L"):
        return icc
    return None


_resize_pool: ThreadPoolExecutor | None = None
_resize_pool_lock = threading.Lock()
_BANDS: Final = min(2, os.cpu_count() or 1)


def _resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Downscale, in horizontal bands resized in parallel (Pillow drops the GIL).

    Resizing is the largest cost after decoding. Pillow's filter support is clamped to the
    whole source image, not to the ``box``, so the bands join seamlessly: the result is
    pixel-identical to one ``resize`` call, in about half the time on two cores.
    The filter: after a JPEG draft decode (libjpeg's DCT scaling is itself a good
    low-pass) the remaining factor is under 2, where bilinear is as close to a full
    decode + Lanczos as bicubic (48.3 vs 48.6 dB PSNR on a 12 MP photo, see
    bench/bench_preprocess.py) at two thirds of the cost; larger factors keep bicubic,
    as ``Image.thumbnail`` uses.
    """
    global _resize_pool
    factor = min(im.width / size[0], im.height / size[1])
    resample = Image.Resampling.BILINEAR if factor < 2 else Image.Resampling.BICUBIC
    if _BANDS < 2 or size[1] < 512 or im.width * im.height < 2_000_000:
        return im.resize(size, resample, reducing_gap=3.0)
    mode = im.mode
    if mode == "RGBA":  # premultiply once, not once per band (resize would do it per call)
        im = im.convert("RGBa")
    gap = min(im.width // size[0], im.height // size[1]) // 3
    if gap > 1:  # what reducing_gap=3 does: a cheap box reduce first for big factors
        im = im.reduce(gap)
    with _resize_pool_lock:
        if _resize_pool is None:
            _resize_pool = ThreadPoolExecutor(_BANDS, thread_name_prefix="chatbrush-resize")
    scale_y = im.height / size[1]
    cuts = [size[1] * k // _BANDS for k in range(_BANDS + 1)]
    bands = [
        _resize_pool.submit(
            im.resize,
            (size[0], bottom - top),
            resample,
            (0, top * scale_y, im.width, min(im.height, bottom * scale_y)),
        )
        for top, bottom in itertools.pairwise(cuts)
    ]
    out = Image.new(im.mode, size, None)  # every pixel is pasted over: no fill needed
    for top, band in zip(cuts, bands, strict=False):
        out.paste(band.result(), (0, top))
    return out.convert(mode) if out.mode != mode else out


# --------------------------------------------------------------------------- stripping


def _strip_jpeg(data: bytes) -> bytes:
    """The JPEG without EXIF/XMP/IPTC/comments/MPF, ending at the first image's EOI.

    Kept: tables, frames, scans, JFIF (without thumbnail), ICC profile, Adobe (colour
    transform). Anything after EOI is dropped too: phones append further images
    (MPO depth maps, gain maps) that carry their own EXIF.
    """
    out: list[bytes] = []
    for seg in jpeg_segments(data):
        payload = data[seg.payload : seg.end]
        if seg.marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 12:
            out.append(b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00")  # no thumbnail
        elif (seg.marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00")) or (
            seg.marker == 0xEE and payload.startswith(b"Adobe")
        ):
            out.append(data[seg.start : seg.end])
        elif not (0xE0 <= seg.marker <= 0xEF or seg.marker == 0xFE):
            out.append(data[seg.start : seg.end])  # APPn / COM (EXIF, XMP, IPTC…) go
    return b"".join(out)


#: chunks that carry pixels or colour; everything else (tEXt, iTXt, zTXt, eXIf, tIME…) goes
_PNG_KEEP: Final = frozenset(
    {
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB",
        b"iCCP", b"sBIT", b"bKGD", b"pHYs", b"cICP", b"mDCv", b"cLLi",
    }
)  # fmt: skip


def _strip_png(data: bytes) -> bytes:
    """The PNG with only pixel and colour chunks, ending at IEND."""
    kept = [data[c.start : c.end] for c in png_chunks(data) if c.ctype in _PNG_KEEP]
    return PNG_SIGNATURE + b"".join(kept)


def _passthrough(
    data: bytes, im: Image.Image, kind: str, orientation: int, max_side: int
) -> PreparedImage | None:
    """The file itself minus metadata, when it needs no other change; else None."""
    if (
        len(data) > PASSTHROUGH_MAX_BYTES
        or orientation != 1
        or max(im.size) > max_side
        or getattr(im, "n_frames", 1) != 1
    ):
        return None
    if kind == "image/jpeg" and im.format == "JPEG" and im.mode in ("L", "RGB"):
        strip = _strip_jpeg
    elif (
        kind == "image/png"
        and im.format == "PNG"
        and im.mode in ("1", "L", "LA", "P", "RGB", "RGBA")
    ):
        strip = _strip_png
    else:
        return None
    try:
        stripped = strip(data)
    except ValueError as exc:
        log.debug("not passing %s through: %s", kind, exc)
        return None
    # Decode what we will actually send: that is the soundness check.
    try:
        check = Image.open(io.BytesIO(stripped), formats=_PIL_FORMATS[kind])
        check.load()
    except Exception as exc:
        log.debug("stripped %s does not decode (%r); re-encoding instead", kind, exc)
        return None
    if check.size != im.size or check.mode != im.mode:
        return None
    return PreparedImage(stripped, kind, im.width, im.height)


# --------------------------------------------------------------------------- public API


def _encode(im: Image.Image, icc: bytes | None) -> tuple[bytes, str]:
    """JPEG for opaque pictures, PNG when there is transparency; no metadata either way."""
    im = _drop_opaque_alpha(im)
    im.info = {}  # Pillow copies e.g. a JPEG comment from info into the output
    buf = io.BytesIO()
    profile = _icc_for(im.mode, icc)
    extra = {"icc_profile": profile} if profile else {}
    if im.mode == "RGBA":
        im.save(buf, format="PNG", compress_level=6, **extra)
        return buf.getvalue(), "image/png"
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, **extra)
    return buf.getvalue(), "image/jpeg"


def _dct_scaled(data: bytes, im: Image.Image, max_side: int) -> Image.Image | None:
    """A big JPEG decoded straight to about the sending size with libjpeg-turbo's DCT
    scaling in steps of 1/8 (simplejpeg): most of the work of a full decode and a resize
    is never done. The smallest step that keeps at least nine tenths of ``max_side`` is
    used (a slightly larger one is resized down after). ``None`` where it does not apply
    (not a plain YCbCr or greyscale JPEG, or one libjpeg-turbo refuses): Pillow decodes."""
    if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return None
    longest = max(im.size)
    eighths = (8 * max_side) // longest
    if longest * eighths < 8 * 0.9 * max_side:
        eighths += 1
    if not 1 <= eighths <= 7:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if im.mode == "L" else "RGB",
            min_width=-(-im.width * eighths // 8), min_height=-(-im.height * eighths // 8),
        )
    except (ValueError, RuntimeError) as exc:
        log.debug("DCT-scaled decode refused (%s); decoding with Pillow", exc)
        return None
    return Image.fromarray(pixels[:, :, 0] if im.mode == "L" else pixels,
                           "L" if im.mode == "L" else "RGB")


def prepare_input(
    data: bytes,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """Validate and normalise one user image, or raise :class:`ImageRejected`.

    Blocking (decoding takes tens of milliseconds): call it in a thread, or use
    :func:`prepare_input_async`.
    """
    if not data:
        raise ImageRejected(N_("That file is empty."))
    if len(data) > max_bytes:
        raise ImageRejected(
            _("That file is too big ({size}); the limit is {limit}.").format(
                size=readable_size(len(data)), limit=readable_size(max_bytes)),
            detail=f"{len(data)} > {max_bytes} bytes",
        )
    kind = sniff_image_type(data)
    if kind is None:
        raise ImageRejected(_describe_non_image(data), detail=f"magic {data[:8]!r}")
    im = _open_checked(data, kind, max_pixels)
    try:
        orientation = _orientation(im)
        prepared = _passthrough(data, im, kind, orientation, max_side)
        if prepared is not None:
            return prepared
        icc = im.info.get("icc_profile")
        width, height = im.size
        scale = max_side / max(width, height)
        scaled = _dct_scaled(data, im, max_side) if scale < 1 else None
        if scaled is not None:
            im = scaled
        else:
            if scale < 1 and im.format in ("JPEG", "MPO"):
                # Ask libjpeg for a 1/2, 1/4 or 1/8 decode that is still at least the
                # target size. The request is in stored (pre-rotation) orientation, so a
                # sideways photo still ends up with its longest side >= max_side.
                im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            im.load()
        im = _normalise_mode(im)
        if max(im.size) > max_side:
            scale = max_side / max(im.size)
            target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = _resize(im, target)
        if orientation != 1:
            im = im.transpose(_ORIENTATION_FIX[orientation])
        out, mime = _encode(im, icc if isinstance(icc, bytes) else None)
    except ImageRejected:
        raise
    except Exception as exc:  # untrusted bytes: any decoder failure means "unreadable"
        raise ImageRejected(_DAMAGED, detail=f"{kind}: {exc!r}") from None
    return PreparedImage(out, mime, im.width, im.height)


async def prepare_input_async(
    data: bytes,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """:func:`prepare_input` in a worker thread, so the event loop keeps serving chats."""
    return await asyncio.to_thread(
        prepare_input, data, max_side=max_side, max_bytes=max_bytes, max_pixels=max_pixels
    )


_UNREADABLE_ANSWER: Final = N_("The model sent an image that could not be read.")


def inspect_output(data: bytes, mime_type: str | None = None) -> OutputImage:
    """Check an image a model returned and report what it really is.

    Models occasionally label bytes wrongly or return garbage; chat platforms then fail
    with obscure errors. The declared ``mime_type`` is only a hint: the bytes decide.
    A PNG, JPEG, WebP or GIF is judged by its structure (see :mod:`bot.kit.image_structure`)
    and passed on undecoded; formats a chat cannot display directly (HEIC, TIFF, BMP…)
    are decoded and converted to PNG, and so is anything the structure check cannot
    vouch for (then the decoder has the last word).
    """
    if not data:
        raise ImageRejected(N_("The model sent an empty image."))
    kind = sniff_image_type(data)
    if kind is None:
        raise ImageRejected(
            N_("The model sent something that is not an image."),
            detail=f"declared {mime_type!r}, magic {data[:8]!r}",
        )
    if mime_type and mime_type.lower() != kind:
        log.info("model declared %s but sent %s", mime_type, kind)
    try:
        layout = read_layout(data, kind)
        if layout is not None and layout.vouched:
            if layout.width * layout.height > DEFAULT_MAX_PIXELS:
                raise _too_many_pixels(layout.width, layout.height, DEFAULT_MAX_PIXELS)
            return OutputImage(data=data, mime_type=kind, width=layout.width,
                               height=layout.height)  # fmt: skip
        return _decoded_output(data, kind)
    except ImageRejected as exc:
        raise ImageRejected(_UNREADABLE_ANSWER, detail=exc.detail) from None
    except Exception as exc:  # MalformedImage, or any decoder failure on untrusted bytes
        raise ImageRejected(_UNREADABLE_ANSWER, detail=f"{kind}: {exc!r}") from None


def _decoded_output(data: bytes, kind: str) -> OutputImage:
    """Decode the answer in full: as it is when a chat shows it, else converted to PNG."""
    im = _open_checked(data, kind, DEFAULT_MAX_PIXELS)
    im.load()
    if kind in _SENDABLE:
        return OutputImage(data=data, mime_type=kind, width=im.width, height=im.height)
    im = _normalise_mode(im)
    buf = io.BytesIO()
    im.info = {}
    im.save(buf, format="PNG")
    return OutputImage(data=buf.getvalue(), mime_type="image/png", width=im.width,
                       height=im.height)  # fmt: skip


def inspect_stored_output(data: bytes, mime_type: str | None = None) -> OutputImage:
    """:func:`inspect_output` for an answer that passed it once and was stored since.

    Re-sending a stored picture needs its type and size, not a second check of bytes the
    store keeps by checksum: a PNG or JPEG costs a header read. Other formats still go
    through :func:`inspect_output`, which converts them for the chat again.
    """
    kind = sniff_image_type(data)
    try:
        if kind == "image/png":
            width, height = png_dimensions(data)
        elif kind == "image/jpeg":
            layout = read_jpeg(data, stop_at_frame=True)
            width, height = layout.width, layout.height
        else:
            return inspect_output(data, mime_type)
    except MalformedImage:
        return inspect_output(data, mime_type)  # refuses it with the usual message
    if width <= 0 or height <= 0:
        return inspect_output(data, mime_type)
    return OutputImage(data=data, mime_type=kind, width=width, height=height)


async def inspect_output_async(data: bytes, mime_type: str | None = None) -> OutputImage:
    """:func:`inspect_output` in a worker thread (a conversion can take a while)."""
    return await asyncio.to_thread(inspect_output, data, mime_type)
