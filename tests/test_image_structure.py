"""Reading image structure without decoding: the cases the public checks do not show.

``tests/test_images.py`` covers what a user sees (answers passed on, damaged ones
refused); here are the readers' own promises on real files made with Pillow.
"""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image

from bot.kit.image_structure import MalformedImage, jpeg_segments, read_jpeg, read_layout


def jpeg(**params: object) -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((96, 64)).save(buf, "JPEG", **params)
    return buf.getvalue()


def test_segments_cover_the_file_from_soi_to_eoi_in_order() -> None:
    data = jpeg(restart_marker_blocks=1, progressive=True)
    segments = list(jpeg_segments(data + b"appended preview"))
    assert segments[0].start == 0 and segments[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    assert [s.marker for s in segments].count(0xDA) > 1  # progressive: several scans


def test_fill_bytes_before_a_marker_are_allowed() -> None:
    data = jpeg()
    filled = data[:2] + b"\xff\xff" + data[2:]
    assert read_jpeg(filled) == read_jpeg(data) == read_jpeg(data, stop_at_frame=True)


def test_unusual_but_legal_frames_are_not_vouched_for() -> None:
    data = jpeg()
    sof = data.index(b"\xff\xc0")
    lossless = data[:sof + 1] + b"\xc3" + data[sof + 2 :]
    assert not read_jpeg(lossless).vouched
    dnl_height = bytearray(data)
    dnl_height[sof + 5 : sof + 7] = b"\x00\x00"  # "height given later by a DNL marker"
    assert not read_jpeg(bytes(dnl_height)).vouched


def test_a_second_frame_or_a_scan_before_the_frame_is_malformed() -> None:
    data = jpeg()
    sof = data.index(b"\xff\xc0")
    sof_end = sof + 2 + int.from_bytes(data[sof + 2 : sof + 4], "big")
    twice = data[:sof_end] + data[sof:sof_end] + data[sof_end:]
    with pytest.raises(MalformedImage, match="second frame"):
        read_jpeg(twice)
    with pytest.raises(MalformedImage, match="before the frame"):
        read_jpeg(data[:sof] + data[sof_end:])


def test_formats_without_a_reader_are_left_to_the_decoder() -> None:
    assert read_layout(b"II*\x00", "image/tiff") is None


def test_webp_whose_riff_length_leaves_out_its_image_is_malformed() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "WEBP")
    data = bytearray(buf.getvalue())
    data[4:8] = (4).to_bytes(4, "little")  # RIFF holds only "WEBP", the VP8 chunk after it
    with pytest.raises(MalformedImage, match="no chunk"):
        read_layout(bytes(data), "image/webp")
