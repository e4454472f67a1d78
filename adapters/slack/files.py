"""Fetching the pictures people attach in Slack, without ever leaking the bot token.

Slack's private file URLs need ``Authorization: Bearer <bot token>``. Event payloads
carry the URL, so a forged or unusual URL could point anywhere: the token is only sent
to Slack's file hosts and to the configured Web API origin (GovSlack, Grid proxies, the
tests' fake), redirects are followed by hand so they cannot carry it elsewhere, and a
download stops as soon as it passes the size limit. Without a valid token Slack answers
an HTML login page with status 200, so every file is also checked by its first bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from bot.core.events import InputImage, InputRefused
from bot.kit.formatting import readable_size
from bot.kit.i18n import _
from bot.kit.images import sniff_image_type

#: Hosts that serve Slack's private files (commercial Slack and GovSlack).
SLACK_FILE_HOSTS = frozenset({"files.slack.com", "files.slack-gov.com"})
#: Raster formats the engine can read; SVG is an "image/" type but not a picture we edit.
IMAGE_FILETYPES = frozenset(
    {"png", "jpg", "jpeg", "gif", "webp", "heic", "heif", "avif", "bmp", "tiff", "tif"}
)
_MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


class FileRefused(InputRefused):
    """A file we will not use; ``str()`` is the short message to show the user."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, (parts.hostname or "").lower(), port)


def token_allowed(url: str, api_url: str) -> bool:
    """Whether ``url`` may receive the bot token: Slack's file hosts over HTTPS, or the
    exact origin (scheme, host and port) of the configured Web API."""
    target = Origin.of(url)
    if target == Origin.of(api_url):
        return True
    return target.scheme == "https" and target.port == 443 and target.host in SLACK_FILE_HOSTS


def file_label(file: Mapping[str, Any]) -> str:
    return str(file.get("name") or file.get("title") or file.get("id") or "the file")


def _too_large_sized() -> str:
    return _("“{name}” is too large ({size}); the limit is {limit}.")


def declared_image(file: Mapping[str, Any]) -> bool:
    """Whether Slack's metadata calls this file a raster picture."""
    mimetype = str(file.get("mimetype") or "").lower()
    filetype = str(file.get("filetype") or "").lower()
    return (mimetype.startswith("image/") and "svg" not in mimetype) or (
        filetype in IMAGE_FILETYPES
    )


def check_declared(file: Mapping[str, Any], max_bytes: int) -> None:
    """Refuse a file from its metadata alone, before anything is downloaded."""
    name = file_label(file)
    mode = file.get("mode")
    if mode == "tombstone":
        raise FileRefused(_("“{name}” was deleted before I could read it.").format(name=name))
    if mode == "hidden_by_limit" or file.get("is_hidden_by_limit"):
        raise FileRefused(_("Slack hides “{name}” (workspace file limit), so I can't read "
                            "it.").format(name=name))
    if not declared_image(file):
        kind = file.get("pretty_type") or file.get("mimetype") or "non-image"
        raise FileRefused(_("I can only edit pictures; “{name}” is a {kind} file.").format(
            name=name, kind=kind))
    size = file.get("size")
    if isinstance(size, int) and size > max_bytes:
        raise FileRefused(_too_large_sized().format(name=name, size=readable_size(size),
                                                  limit=readable_size(max_bytes)))


async def download_image(
    session: aiohttp.ClientSession,
    file: Mapping[str, Any],
    *,
    token: str,
    api_url: str,
    max_bytes: int,
) -> InputImage:
    """Download one Slack file as an image, or raise :class:`FileRefused`."""
    check_declared(file, max_bytes)
    name = file_label(file)
    url = file.get("url_private_download") or file.get("url_private")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FileRefused(_("Slack didn't give me a download link for “{name}”.").format(
            name=name))
    if not token_allowed(url, api_url):
        # Never send the token to a host that is not Slack's; nor fetch without it.
        raise FileRefused(_("I couldn't download “{name}”: it isn't stored on Slack.").format(
            name=name))
    data = await _fetch(session, url, token=token, api_url=api_url, max_bytes=max_bytes, name=name)
    mime = sniff_image_type(data)  # the core's own judge, so both agree on every file
    if mime is None:
        raise FileRefused(_("“{name}” doesn't look like a picture (PNG, JPEG, WebP, GIF or "
                            "HEIC).").format(name=name))
    return InputImage(data=data, mime_type=mime, filename=name)


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str,
    api_url: str,
    max_bytes: int,
    name: str,
) -> bytes:
    for _redirect in range(_MAX_REDIRECTS + 1):
        headers = {"Authorization": f"Bearer {token}"} if token_allowed(url, api_url) else {}
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise FileRefused(_("I couldn't download “{name}” (Slack said "
                                        "{status}).").format(name=name, status=resp.status))
                if resp.content_type == "text/html":
                    # Slack's login page: the token lacks the files:read scope.
                    raise FileRefused(
                        _("Slack wouldn't let me read “{name}” (is the files:read scope "
                          "granted?).").format(name=name)
                    )
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise FileRefused(_too_large_sized().format(
                        name=name, size=readable_size(declared), limit=readable_size(max_bytes)))
                chunks: list[bytes] = []
                total = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise FileRefused(
                            _("“{name}” is too large; the limit is {limit}.").format(
                                name=name, limit=readable_size(max_bytes))
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileRefused(_("I couldn't download “{name}” from Slack; try again.").format(
                name=name)) from exc
    raise FileRefused(_("I couldn't download “{name}”: too many redirects.").format(
        name=name))
