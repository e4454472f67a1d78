"""The fence around URLs someone else chose: an answer's linked picture is fetched only
from a public address (or a host the operator allowed).

Every address the name resolves to is checked and the connection goes to a checked one;
IPv6 addresses that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are
judged by the IPv4 address they reach as well. Redirects are checked again, credentials in
URLs are refused, and the body is capped, timed and sniffed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import httpx

from bot.kit.images import sniff_image_type
from bot.models.base import Blob

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchFailed(Exception):
    """A linked picture could not be had; ``str()`` says why, for the operator's log."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the system resolver sees it."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach, if any: IPv4-mapped
    (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::/96``), 6to4
    (``2002::/16``) and Teredo's client. A gateway on the path turns these into IPv4
    packets, so ``[64:ff9b::127.0.0.1]`` is loopback as surely as ``127.0.0.1``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if (ip in IPV4_COMPATIBLE and int(ip) > 1) or ip in NAT64:  # :: and ::1 are themselves
        return low32
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def refusal_reason(address: str) -> str | None:
    """Why a connection to ``address`` is not allowed, or None for a public address."""
    ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
    if ip in NAT64_LOCAL_USE:  # RFC 8215: the IPv4 address may sit anywhere inside
        return "local NAT64"
    inner = embedded_ipv4(ip)
    for candidate in (inner, ip) if inner is not None else (ip,):
        reason = _reason(candidate)
        if reason:
            return reason
    return None


def _reason(ip: IPAddress) -> str | None:
    for reason, hit in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
    ):
        if hit:
            return reason
    return None if ip.is_global else "not public"


class ImageFetcher:
    """Downloads a picture from a URL an answer gave, with every fence a URL chosen by
    someone else needs. ``allowed_hosts`` may resolve to non-public addresses (a relay
    on the same machine or network); ``resolver`` is how names are resolved."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        allowed_hosts: Iterable[str] = (),
        resolver: Resolver | None = None,
        client: httpx.AsyncClient | None = None,
        max_redirects: int = 3,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allowed_hosts = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts)
        self.max_redirects = max_redirects
        self._resolve = resolver or system_resolver
        self._owns_client = client is None
        # its own client: the API client's key and base URL have nothing to do here
        self._client = client or httpx.AsyncClient(headers={"user-agent": "chatbrush"})

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def fetch(self, url: str) -> Blob:
        """The picture at ``url``, or :class:`FetchFailed`."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(url)
        except FetchFailed:
            raise
        except TimeoutError:
            raise FetchFailed(f"no picture from {origin(url)} within {self.timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise FetchFailed(f"{origin(url)}: {type(exc).__name__}: {exc}"[:500]) from None

    async def _follow(self, url: str) -> Blob:
        for _ in range(self.max_redirects + 1):
            target = httpx.URL(url)
            address = await self._checked_address(target)
            request = self._client.build_request(
                "GET",
                target.copy_with(host=address),  # connect to the address that was checked
                headers={"host": target.netloc.decode("ascii"), "accept": "image/*"},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = str(target.join(response.headers["location"]))
                    continue
                return await self._picture(target, response)
            finally:
                await response.aclose()
        raise FetchFailed(f"more than {self.max_redirects} redirects from {origin(url)}")

    async def _checked_address(self, target: httpx.URL) -> str:
        if target.scheme not in ("http", "https") or not target.host:
            raise FetchFailed(f"not an http(s) URL: {origin(str(target))}")
        if target.userinfo:
            raise FetchFailed(f"URL carries credentials: {origin(str(target))}")
        host = target.host.lower()
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            port = target.port or (443 if target.scheme == "https" else 80)
            addresses = await self._resolve(host, port)
        if not addresses:
            raise FetchFailed(f"{host} does not resolve")
        if host not in self.allowed_hosts:
            for address in addresses:
                reason = refusal_reason(address)
                if reason:
                    raise FetchFailed(
                        f"refused: {host} resolves to {address} ({reason}); allow it with "
                        "OPENAI_ALLOW_PRIVATE_IMAGE_HOSTS if it is yours"
                    )
        return addresses[0]

    async def _picture(self, target: httpx.URL, response: httpx.Response) -> Blob:
        where = origin(str(target))
        if response.status_code != 200:
            raise FetchFailed(f"{where} answered HTTP {response.status_code}")
        declared_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if declared_type and not declared_type.startswith(("image/", "application/octet-stream")):
            raise FetchFailed(f"{where} sent {declared_type}, not a picture")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed(f"{where} declares {declared} bytes, over {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchFailed(f"{where} sent over {self.max_bytes} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        kind = sniff_image_type(data)
        if kind is None:
            raise FetchFailed(f"{where} sent {size} bytes that are not a picture")
        return Blob(kind, data)


def origin(url: str) -> str:
    """Scheme, host and port of a URL, for messages (paths may carry signed tokens)."""
    match = re.match(r"[a-zA-Z][\w+.-]*://[^/?#]*", url)
    return (match.group(0) if match else url[:40]).rsplit("@", 1)[-1]


__all__ = ["FetchFailed", "ImageFetcher", "Resolver", "embedded_ipv4", "origin",
           "refusal_reason", "system_resolver"]
