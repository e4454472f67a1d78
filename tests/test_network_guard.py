"""The offline guard really refuses non-loopback addresses (so other tests can trust it)."""

from __future__ import annotations

import socket

import httpx
import pytest


def test_connecting_to_a_public_address_fails_before_any_packet() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="non-loopback"):
        sock.connect(("8.8.8.8", 443))


async def test_httpx_to_a_remote_host_is_refused() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(Exception, match="non-loopback"):
            await client.get("https://api.telegram.org/")
