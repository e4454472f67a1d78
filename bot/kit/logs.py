"""Logging set-up that cannot leak secrets.

Bot tokens travel inside URLs (Telegram's ``/bot<token>/``) and HTTP client libraries
log URLs, so every record is passed through a filter that masks each configured secret
value, whatever logger produced it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "[secret]"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def secret_values(*models: BaseModel) -> list[str]:
    """Every secret among the fields of ``models`` (pydantic models: the kit knows no
    project type; callers pass the settings and every group read, the platforms'), with the
    password of a URL also on its own."""
    values = []
    fields = [(group, name) for group in models for name in type(group).model_fields]
    for group, name in fields:
        value = getattr(group, name)
        if isinstance(value, tuple):  # a list of secrets (GEMINI_API_KEYS): each on its own
            values += [v.get_secret_value() for v in value if isinstance(v, SecretStr)]
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
            # a URL with a password (DATABASE_URL): the password may be logged on its own
            password = urlsplit(value.get_secret_value()).password if "://" in str(
                value.get_secret_value()) else None
            if password:
                values.append(unquote(password))
    return values


def setup_logging(secrets: Iterable[str], *, level: int = logging.INFO) -> RedactSecrets:
    """Log to stderr with ``secrets`` masked in every record (see :func:`secret_values`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines of HTTP clients are noise at INFO (and carry tokens in URLs); adapters
    # quiet their own SDK's.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return redactor
