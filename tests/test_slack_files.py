"""Downloading Slack files for real (aiohttp against the fake file host)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from adapters.slack.files import FileRefused, download_image
from tests.fakes.slack_api import FakeSlack


def png(color: str = "red", size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeSlack]:
    """A second server: a host that is not Slack's (its own port on loopback)."""
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_downloads_with_the_bot_token(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    data = png()
    file = slack.host_file(data, "cat.png")
    image = await download_image(
        session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
    )
    assert image.data == data and image.mime_type == "image/png"
    assert slack.files[file["id"]].downloads == [f"Bearer {slack.bot_token}"]


async def test_foreign_host_never_receives_the_token(
    slack: FakeSlack, elsewhere: FakeSlack, session: aiohttp.ClientSession
) -> None:
    file = elsewhere.host_file(png(), "cat.png", host=elsewhere.base_url)
    with pytest.raises(FileRefused, match=r"cat\.png"):
        await download_image(
            session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
        )
    assert elsewhere.files[file["id"]].downloads == []


async def test_redirect_off_slack_drops_the_token(
    slack: FakeSlack, elsewhere: FakeSlack, session: aiohttp.ClientSession
) -> None:
    target = elsewhere.host_file(png(), "cat.png", host=elsewhere.base_url)
    file = slack.host_file(b"", "cat.png", redirect_to=target["url_private_download"])
    with pytest.raises(FileRefused):  # the foreign host answers its login page
        await download_image(
            session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
        )
    assert slack.files[file["id"]].downloads == [f"Bearer {slack.bot_token}"]
    assert elsewhere.files[target["id"]].downloads == [None]


async def test_login_page_instead_of_the_file_is_refused(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    file = slack.host_file(png(), "cat.png")
    with pytest.raises(FileRefused, match=r"files:read"):
        await download_image(
            session, file, token="xoxb-revoked", api_url=slack.api_url, max_bytes=1_000_000
        )


async def test_size_limit_holds_even_when_the_declared_size_lies(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    file = slack.host_file(png(size=(600, 600)) + b"\0" * 200_000, "huge.png", size=1000)
    with pytest.raises(FileRefused, match="too large"):
        await download_image(
            session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=100_000
        )


async def test_content_that_is_not_an_image_is_refused_whatever_the_mimetype(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    file = slack.host_file(b"%PDF-1.7 not a picture", "scan.png", mimetype="image/png")
    with pytest.raises(FileRefused, match="doesn't look like a picture"):
        await download_image(
            session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
        )


def encoded(fmt: str, *, frames: int = 1) -> bytes:
    pictures = [Image.new("RGB", (64, 48), colour) for colour in ("red", "blue")[:frames]]
    out = io.BytesIO()
    pictures[0].save(out, fmt, save_all=frames > 1, append_images=pictures[1:], duration=100)
    return out.getvalue()


@pytest.mark.parametrize(("name", "data", "mime_type"), [
    # the formats on which Slack's own sniffer and the core's disagreed
    ("favicon.ico", encoded("ICO"), "image/x-icon"),  # Slack refused what the core edits
    ("loop.avif", encoded("AVIF", frames=2), "image/avif"),  # "avis" brand: refused too
    ("camera.hif", b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf"
                   + encoded("HEIF")[28:], "image/heif"),  # Slack called it image/heic
], ids=["ico", "animated-avif", "heif-mif1"])  # the bytes differ between processes
async def test_every_picture_the_core_reads_comes_through_slack_as_the_same_type(
    slack: FakeSlack, session: aiohttp.ClientSession, name: str, data: bytes, mime_type: str
) -> None:
    file = slack.host_file(data, name, mimetype="image/unknown")
    image = await download_image(
        session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
    )
    assert image.mime_type == mime_type


async def test_a_file_that_only_starts_like_a_bitmap_is_refused_by_its_name(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    """"BM" alone made Slack's sniffer say BMP; the core refused it later, nameless."""
    file = slack.host_file(b"BMW service history\n2024: brakes\n", "car.bmp",
                           mimetype="image/bmp")
    with pytest.raises(FileRefused, match=r"“car\.bmp” doesn't look like a picture"):
        await download_image(
            session, file, token=slack.bot_token, api_url=slack.api_url, max_bytes=1_000_000
        )
