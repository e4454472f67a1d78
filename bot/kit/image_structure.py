"""What an image file's structure says about it, read without decoding a pixel.

A model's answer is a 1–2 MB PNG or JPEG that a chat shows as it is. Decoding it only to
learn that it is sound costs about 15 ms of CPU per answer; walking its structure costs a
fraction of a millisecond and catches what a decode would: truncation (PNG and GIF end
with a terminator, JPEG with EOI, WebP declares its length), transit damage (every PNG
chunk has a CRC, which Pillow does not even check for pixel data), impossible headers
and decompression bombs (the dimensions are in the header). Corrupt entropy-coded JPEG or
VP8 data passes both checks alike: libjpeg and libwebp decode it to garbage with at most a
warning.

Each reader returns a :class:`Layout` or raises :class:`MalformedImage` for definite
damage. Anything legal but unusual (an unknown critical PNG chunk, a lossless or
arithmetic-coded JPEG, bytes between JPEG segments that libjpeg would skip) comes back
with ``vouched=False``: the caller then lets a real decoder decide.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


class MalformedImage(ValueError):
    """The bytes cannot be the image they start like: truncated, damaged or impossible."""


@dataclass(frozen=True)
class Layout:
    """Dimensions from the headers, and whether the structure check covers the file."""

    width: int
    height: int
    #: True when the walk saw the whole file and every part was one a decoder accepts
    vouched: bool = True


# --------------------------------------------------------------------------- PNG


class Chunk(NamedTuple):
    """One PNG chunk: its type and where it lies (``data[start:end]`` is the whole chunk)."""

    ctype: bytes
    start: int
    end: int


def png_chunks(data: bytes) -> list[Chunk]:
    """Every chunk up to IEND, CRCs checked (zlib's CRC runs at GB/s)."""
    n = len(data)
    view = memoryview(data)
    chunks: list[Chunk] = []
    i = len(PNG_SIGNATURE)
    while True:
        if i + 12 > n:
            raise MalformedImage("png: truncated chunk header")
        length = int.from_bytes(data[i : i + 4], "big")
        end = i + 12 + length
        if end > n:
            raise MalformedImage("png: truncated chunk")
        ctype = data[i + 4 : i + 8]
        if zlib.crc32(view[i + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            raise MalformedImage(f"png: bad CRC in {ctype!r} chunk")
        chunks.append(Chunk(ctype, i, end))
        i = end
        if ctype == b"IEND":
            return chunks


#: colour type -> the bit depths the PNG specification allows for it
_PNG_DEPTHS: Final = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
_PNG_CRITICAL: Final = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})


def png_dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from IHDR, which the specification puts first."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise MalformedImage("png: no IHDR chunk first")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def read_png(data: bytes) -> Layout:
    """Signature, chunk order, every CRC, a valid IHDR, contiguous IDAT, IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise MalformedImage("png: no signature")
    chunks = png_chunks(data)
    if chunks[0].ctype != b"IHDR" or chunks[0].end - chunks[0].start != 25:
        raise MalformedImage("png: IHDR is not the first chunk or has the wrong length")
    width, height = png_dimensions(data)
    depth, colour, compression, filtering, interlace = data[24:29]
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise MalformedImage(f"png: impossible size {width}x{height}")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise MalformedImage(f"png: impossible IHDR (depth {depth}, colour type {colour})")
    types = [c.ctype for c in chunks]
    idats = [k for k, t in enumerate(types) if t == b"IDAT"]
    if not idats:
        raise MalformedImage("png: no IDAT chunk")
    if idats[-1] - idats[0] + 1 != len(idats):
        raise MalformedImage("png: IDAT chunks are not consecutive")
    if b"IHDR" in types[1:] or types.count(b"PLTE") > 1:
        raise MalformedImage("png: repeated IHDR or PLTE")
    if b"PLTE" in types and types.index(b"PLTE") > idats[0]:
        raise MalformedImage("png: PLTE after IDAT")
    if colour == 3 and b"PLTE" not in types:
        raise MalformedImage("png: palette image without PLTE")
    first = chunks[idats[0]]
    zlib_header = data[first.start + 8 : first.start + 10]
    if len(zlib_header) == 2 and (
        zlib_header[0] & 0x0F != 8 or int.from_bytes(zlib_header, "big") % 31
    ):
        raise MalformedImage("png: IDAT does not start a zlib stream")
    unknown_critical = any(t[:1].isupper() and t not in _PNG_CRITICAL for t in types)
    return Layout(width, height, vouched=not unknown_critical and len(zlib_header) == 2)


# --------------------------------------------------------------------------- JPEG


class Segment(NamedTuple):
    """One JPEG marker segment: ``data[start:end]`` from its 0xFF to its end.

    For SOS the segment runs on over the entropy-coded data, up to the next marker.
    ``payload`` is where the bytes after the length field start (``end`` for markers
    without one).
    """

    marker: int
    start: int
    payload: int
    end: int


#: a real marker inside entropy-coded data: not a stuffed 0xFF00, an RSTn or a fill byte
#: (a pattern that starts with a plain literal lets ``re`` skip ahead at memchr speed)
_MARKER_IN_SCAN: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})


class UnexpectedByte(MalformedImage):
    """A byte where a JPEG marker should be: libjpeg would skip it with a warning."""


def jpeg_segments(data: bytes) -> Iterator[Segment]:
    """The marker segments of the first image, from SOI to EOI (both included).

    Raises :class:`MalformedImage` when the file ends early, :class:`UnexpectedByte`
    when something other than a marker sits between segments.
    """
    n = len(data)
    if not data.startswith(b"\xff\xd8"):
        raise MalformedImage("jpeg: no SOI")
    yield Segment(0xD8, 0, 2, 2)
    i = 2
    while True:
        if i >= n:
            raise MalformedImage("jpeg: ends without EOI")
        if data[i] != 0xFF:
            raise UnexpectedByte(f"jpeg: expected a marker at {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise MalformedImage("jpeg: truncated marker")
        start, marker = i - 1, data[i]
        i += 1
        if marker == 0xD9:
            yield Segment(marker, start, i, i)
            return
        if marker in _STANDALONE:
            yield Segment(marker, start, i, i)
            continue
        if i + 2 > n:
            raise MalformedImage("jpeg: truncated segment length")
        length = int.from_bytes(data[i : i + 2], "big")
        end = i + length
        if length < 2 or end > n:
            raise MalformedImage(f"jpeg: truncated segment 0x{marker:02X}")
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            found = _MARKER_IN_SCAN.search(data, end)
            if found is None:
                raise MalformedImage("jpeg: scan runs past the end")
            yield Segment(marker, start, i + 2, found.start())
            i = found.start()
        else:
            yield Segment(marker, start, i + 2, end)
            i = end


#: SOFn markers (DHT 0xC4, JPG 0xC8 and DAC 0xCC share the range but are not frames)
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: baseline, extended and progressive Huffman: what every chat client displays
_SOF_COMMON: Final = frozenset({0xC0, 0xC1, 0xC2})


def read_jpeg(data: bytes, *, stop_at_frame: bool = False) -> Layout:
    """SOI, well-formed segments, one frame header with a size, a scan, and EOI.

    With ``stop_at_frame`` only the headers up to the frame are read: enough for the
    dimensions of a file already known to be sound.
    """
    frame: Segment | None = None
    scans = 0
    try:
        for seg in jpeg_segments(data):
            if seg.marker in _SOF:
                if frame is not None or scans:
                    raise MalformedImage("jpeg: a second frame header")
                frame = seg
                if stop_at_frame:
                    break
            elif seg.marker == 0xDA:
                if frame is None:
                    raise MalformedImage("jpeg: a scan before the frame header")
                components = data[seg.payload] if seg.payload < len(data) else 0
                if not 1 <= components <= 4 or data[seg.payload - 2 : seg.payload] != (
                    (6 + 2 * components).to_bytes(2, "big")
                ):
                    raise MalformedImage("jpeg: malformed scan header")
                scans += 1
            elif 0x02 <= seg.marker <= 0xBF:
                raise MalformedImage(f"jpeg: reserved marker 0x{seg.marker:02X}")
    except UnexpectedByte:
        return Layout(0, 0, vouched=False)  # the decoder gets the size and the last word
    if frame is None:
        raise MalformedImage("jpeg: no frame header")
    if not scans and not stop_at_frame:
        raise MalformedImage("jpeg: no scan")
    body = data[frame.payload : frame.end]
    if len(body) < 6 or len(body) != 6 + 3 * body[5]:
        raise MalformedImage("jpeg: malformed frame header")
    precision, components = body[0], body[5]
    height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    if width == 0 or not 1 <= components <= 4:
        raise MalformedImage(f"jpeg: impossible frame ({width}x{height}, {components})")
    common = frame.marker in _SOF_COMMON and precision == 8 and components != 2
    # height 0 means "given later by a DNL marker": legal, rare, left to the decoder
    return Layout(width, height, vouched=common and height > 0)


# --------------------------------------------------------------------------- WebP


def read_webp(data: bytes) -> Layout:
    """RIFF length, chunk layout, and the size in the VP8, VP8L or VP8X header."""
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise MalformedImage("webp: no RIFF/WEBP header")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data):
        raise MalformedImage("webp: shorter than its RIFF header says")
    chunks: dict[bytes, bytes] = {}
    i = 12
    while i < riff_end:
        if i + 8 > riff_end:
            raise MalformedImage("webp: truncated chunk header")
        fourcc, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if i + 8 + size > riff_end:
            raise MalformedImage(f"webp: truncated {fourcc!r} chunk")
        chunks.setdefault(fourcc, data[i + 8 : i + 8 + size])
        i += 8 + size + (size & 1)
    first = data[12:16]
    if first not in chunks:
        raise MalformedImage("webp: no chunk inside the RIFF length")
    if first == b"VP8X":
        body = chunks[first]
        if len(body) < 10:
            raise MalformedImage("webp: short VP8X chunk")
        if not ({b"VP8 ", b"VP8L"} & chunks.keys() or {b"ANIM", b"ANMF"} <= chunks.keys()):
            raise MalformedImage("webp: VP8X without image data")
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return Layout(width, height)
    if first == b"VP8 ":
        body = chunks[first]
        tag = int.from_bytes(body[:3], "little") if len(body) >= 10 else 1
        if tag & 1 or body[3:6] != b"\x9d\x01\x2a":
            raise MalformedImage("webp: VP8 data is not a key frame")
        if (tag >> 5) > len(body) - 10:
            raise MalformedImage("webp: VP8 first partition runs past its chunk")
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
        return Layout(width, height)
    if first == b"VP8L":
        body = chunks[first]
        if len(body) < 5 or body[0] != 0x2F:
            raise MalformedImage("webp: VP8L signature missing")
        bits = int.from_bytes(body[1:5], "little")
        if bits >> 29:
            raise MalformedImage("webp: unknown VP8L version")
        return Layout((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    raise MalformedImage(f"webp: unknown first chunk {first!r}")


# --------------------------------------------------------------------------- GIF


def _skip_sub_blocks(data: bytes, i: int) -> int:
    """The index after a chain of data sub-blocks (each led by its length, 0 ends)."""
    n = len(data)
    while True:
        if i >= n:
            raise MalformedImage("gif: truncated data sub-blocks")
        size = data[i]
        i += 1 + size
        if size == 0:
            return i


def read_gif(data: bytes) -> Layout:
    """Header, colour tables and every block up to the trailer; the canvas size."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        raise MalformedImage("gif: no header")
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    flags = data[10]
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    images = 0
    n = len(data)
    while True:
        if i >= n:
            if images:  # complete frames, only the trailer missing: let a decoder judge
                return Layout(width, height, vouched=False)
            raise MalformedImage("gif: ends before the trailer")
        block = data[i]
        if block == 0x3B:
            break
        if block == 0x21:
            i = _skip_sub_blocks(data, i + 2)
        elif block == 0x2C:
            if i + 10 > n:
                raise MalformedImage("gif: truncated image descriptor")
            left, top, w, h = (int.from_bytes(data[k : k + 2], "little")
                               for k in range(i + 1, i + 9, 2))  # fmt: skip
            width, height = max(width, left + w), max(height, top + h)  # Pillow grows too
            local = data[i + 9]
            i += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            i = _skip_sub_blocks(data, i + 1)  # after the LZW minimum code size
            images += 1
        else:
            raise MalformedImage(f"gif: unknown block 0x{block:02X}")
    if not images or width == 0 or height == 0:
        raise MalformedImage("gif: no image")
    return Layout(width, height)


# --------------------------------------------------------------------------- ICO / CUR

ICON_MAGIC: Final = b"\x00\x00\x01\x00"
CURSOR_MAGIC: Final = b"\x00\x00\x02\x00"
#: header sizes of the DIB variants an icon frame may use (BITMAPCOREHEADER is 12)
_DIB_HEADERS: Final = frozenset({12, 40, 52, 56, 64, 108, 124})


class IconFrame(NamedTuple):
    """One picture in an ICO or CUR file; ``data[start:end]`` is a PNG or a DIB."""

    width: int
    height: int
    bits: int
    start: int
    end: int
    is_png: bool


def looks_like_icon(data: bytes) -> bool:
    """ICO/CUR magic is four bytes, three of them zero: the directory must fit too."""
    if data[:4] not in (ICON_MAGIC, CURSOR_MAGIC) or len(data) < 22:
        return False
    count = int.from_bytes(data[4:6], "little")
    first_offset = int.from_bytes(data[18:22], "little")
    return count > 0 and 6 + 16 * count <= first_offset < len(data)


def icon_frames(data: bytes) -> list[IconFrame]:
    """Every frame of an ICO or CUR file, its size read from the frame's own header.

    The directory's one-byte sizes cannot say more than 256, and a PNG frame may claim
    anything: the frame headers are what a decoder allocates for.
    """
    count = int.from_bytes(data[4:6], "little")
    table_end = 6 + 16 * count
    if count == 0 or table_end > len(data):
        raise MalformedImage("icon: directory runs past the end")
    frames = []
    for entry in range(6, table_end, 16):
        bits = int.from_bytes(data[entry + 6 : entry + 8], "little")
        size = int.from_bytes(data[entry + 8 : entry + 12], "little")
        start = int.from_bytes(data[entry + 12 : entry + 16], "little")
        end = start + size
        if start < table_end or end > len(data) or size < 16:
            raise MalformedImage("icon: a frame lies outside the file")
        frame = data[start:end]
        if frame.startswith(PNG_SIGNATURE):
            width, height = png_dimensions(frame)
            frames.append(IconFrame(width, height, bits, start, end, is_png=True))
            continue
        header = int.from_bytes(frame[0:4], "little")
        if header not in _DIB_HEADERS:
            raise MalformedImage(f"icon: frame is neither PNG nor bitmap ({frame[:4]!r})")
        if header == 12:
            width = int.from_bytes(frame[4:6], "little")
            doubled = int.from_bytes(frame[6:8], "little")
        else:
            width = int.from_bytes(frame[4:8], "little", signed=True)
            doubled = abs(int.from_bytes(frame[8:12], "little", signed=True))
        # a bitmap frame's height counts its colour rows and its transparency mask
        if width <= 0 or doubled < 2:
            raise MalformedImage(f"icon: bitmap frame of {width}x{doubled // 2}")
        frames.append(IconFrame(width, doubled // 2, bits, start, end, is_png=False))
    return frames


READERS: Final = {
    "image/png": read_png,
    "image/jpeg": read_jpeg,
    "image/webp": read_webp,
    "image/gif": read_gif,
}


def read_layout(data: bytes, kind: str) -> Layout | None:
    """The structure of a ``kind`` file; None for kinds without a reader here."""
    reader = READERS.get(kind)
    if reader is None:
        return None
    layout = reader(data)
    if layout.vouched and not (layout.width > 0 and layout.height > 0):
        raise MalformedImage(f"{kind}: empty size {layout.width}x{layout.height}")
    return layout
