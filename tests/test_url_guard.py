"""The URL guard: a picture an answer links to is fetched only from a public address, and
IPv6 forms that carry an IPv4 address are judged by the address they reach."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.models.url_guard import FetchFailed, ImageFetcher, refusal_reason
from tests.fakes.gemini import make_png
from tests.fakes.openai_compat import FakeImageHost

# Each form reaches 127.0.0.1, 10.1.2.3 or 169.254.169.254 through a gateway or a stack.
EMBEDDED = [
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::a01:203", "private"),  # IPv4-compatible, written in hex (10.1.2.3)
    ("64:ff9b::127.0.0.1", "loopback"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 to the cloud metadata address
    ("64:ff9b::10.1.2.3", "private"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a01:203::", "private"),  # 6to4 of 10.1.2.3
    ("2002:a9fe:a9fe::1", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ("64:ff9b:1::a01:203", "local NAT64"),  # RFC 8215 local-use prefix
]

PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001:80b::200e",
          "64:ff9b::8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "reason"), EMBEDDED)
def test_ipv6_forms_that_carry_a_private_ipv4_address_are_refused(
    address: str, reason: str
) -> None:
    assert refusal_reason(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_ordinary_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(address) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("fd00::1", "private"),
    ("fe80::1%eth0", "link-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
])
def test_plain_non_public_addresses_stay_refused(address: str, reason: str) -> None:
    assert refusal_reason(address) == reason


class Names:
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def __call__(self, host: str, port: int) -> list[str]:
        return self.names.get(host, [])


@pytest.fixture
async def host() -> AsyncIterator[FakeImageHost]:
    async with FakeImageHost() as server:
        yield server


@pytest.mark.parametrize(("address", "reason"), EMBEDDED[:9])
async def test_a_link_whose_name_resolves_to_an_embedded_private_address_gets_no_request(
    host: FakeImageHost, address: str, reason: str
) -> None:
    path = host.put(make_png())
    fetcher = ImageFetcher(max_bytes=1 << 20, timeout=5,
                           resolver=Names({"cdn.example": ["93.184.215.14", address]}))
    try:
        with pytest.raises(FetchFailed, match=rf"resolves to {address} \({reason}\)"):
            await fetcher.fetch(host.url(path, host="cdn.example"))
    finally:
        await fetcher.aclose()
    assert host.requests == []


@pytest.mark.parametrize("literal", ["[::127.0.0.1]", "[64:ff9b::127.0.0.1]",
                                     "[2002:7f00:1::1]", "[::ffff:7f00:1]"])
async def test_a_literal_ipv6_url_that_reaches_loopback_is_refused(
    host: FakeImageHost, literal: str
) -> None:
    fetcher = ImageFetcher(max_bytes=1 << 20, timeout=5, resolver=Names({}))
    try:
        with pytest.raises(FetchFailed, match=r"\(loopback\)"):
            await fetcher.fetch(host.url(host.put(make_png()), host=literal))
    finally:
        await fetcher.aclose()
    assert host.requests == []


async def test_an_allowed_host_on_loopback_is_still_fetched(host: FakeImageHost) -> None:
    png = make_png()
    fetcher = ImageFetcher(max_bytes=1 << 20, timeout=5, allowed_hosts=["images.local"],
                           resolver=Names({"images.local": ["127.0.0.1"]}))
    try:
        blob = await fetcher.fetch(host.url(host.put(png), host="images.local"))
    finally:
        await fetcher.aclose()
    assert blob.data == png and len(host.requests) == 1
