"""Logging set-up that cannot leak secrets.

Bot tokens travel inside URLs (Telegram's ``/bot<token>/``), HTTP client libraries log
URLs, request parameters and bodies at DEBUG, and services echo what they were sent in
their error texts — sometimes changed: python-telegram-bot lower-cases descriptions that
start with "Bad Request:". So the filter on the root handler masks, in every record that
reaches it (ours and the libraries', message, arguments, traceback and stack):

- every configured secret and every derived one (:func:`add_secret`), in any case, also
  percent-encoded;
- whatever has the shape of a credential though no setting names it: a URL's password,
  ``?key=``-style query values, ``'secret_token': …``/``Authorization: Bearer …`` pairs,
  and the well-known token shapes (Telegram, Slack, Google, OpenAI-style keys).
"""

from __future__ import annotations

import logging
import re
import sys
import weakref
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "[secret]"
SHORTEST_SECRET = 6  # shorter values would mask ordinary words; no real secret is this short

_CREDENTIAL_NAMES = (
    r"[\w-]*api[_-]?key|secret|[\w-]*secret[_-]token|client[_-]secret|signing[_-]secret"
    r"|password|passwd|token|access[_-]token|refresh[_-]token|bot[_-]token|app[_-]token"
    r"|authorization|proxy-authorization"
)
# (hints, pattern, replacement): the pattern runs only on text holding one of the hints
# (lower case; cheap substring tests spare most lines the regular expressions), and the
# part before the value is kept so the line still reads
_SHAPES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = tuple(
    (hints, re.compile(pattern, re.IGNORECASE), replacement)
    for hints, pattern, replacement in (
        # scheme://user:password@host
        (("://",), r"(\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^/\s@'\"]+(?=@)", rf"\1{MASK}"),
        # ?key=…, &access_token=…, ;sig=…
        (("=",), r"([?&;][\w.-]*(?:key|token|secret|passw|pwd|sig|auth|credential)[\w.-]*=)"
                 r"[^&#\s'\"]+", rf"\1{MASK}"),
        # 'secret_token': '…', Authorization: Bearer …, password=…
        (("key", "secret", "passw", "token", "authoriz"),
         rf"(['\"]?\b(?:{_CREDENTIAL_NAMES})\b['\"]?\s*[:=]\s*['\"]?"
         r"(?:(?:bearer|basic|bot|token)\s+)?)[^\s'\",&}]+", rf"\1{MASK}"),
        ((":",), r"\b\d{5,12}:[a-z0-9_-]{30,}", MASK),  # Telegram bot token
        (("xox", "xapp"), r"\bx(?:ox[a-z]|app)-[a-z0-9-]{8,}", MASK),  # Slack tokens
        (("aiza",), r"\baiza[0-9a-z_-]{30,}", MASK),  # Google API key
        (("sk-",), r"\bsk-[a-z0-9_-]{20,}", MASK),  # OpenAI-style keys
    )
)

_derived: set[str] = set()
_redactors: weakref.WeakSet[RedactSecrets] = weakref.WeakSet()


def add_secret(value: str) -> None:
    """Mask ``value`` in every record from now on. For secrets the program derives rather
    than reads from a setting (the webhook secret Telegram's adapter derives from the token),
    which :func:`secret_values` cannot see."""
    _derived.add(value)
    for redactor in list(_redactors):
        redactor.add(value)


class RedactSecrets(logging.Filter):
    """Masks secrets in every record it sees (see the module's docstring for which)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._literal: re.Pattern[str] | None = None
        for secret in [*secrets, *_derived]:
            self.add(secret)
        _redactors.add(self)

    def add(self, secret: str) -> None:
        if len(secret) < SHORTEST_SECRET or secret in self.secrets:
            return
        self.secrets.add(secret)
        forms = {s for secret in self.secrets for s in (secret, quote(secret, safe=""))}
        self._literal = re.compile(
            "|".join(re.escape(s) for s in sorted(forms, key=len, reverse=True)),
            re.IGNORECASE)

    def redact(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(MASK, text)
        lowered = text.lower()
        for hints, pattern, replacement in _SHAPES:
            if any(hint in lowered for hint in hints):
                text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: logging would print them raw
            message = f"{record.msg} {record.args!r}"
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
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
            secret = value.get_secret_value()
            values.append(secret)
            # a URL with a password (DATABASE_URL): the password may be logged on its own
            password = urlsplit(secret).password if "://" in secret else None
            if password:
                values.append(unquote(password))
    return values


def _log_uncaught(kind: type[BaseException], error: BaseException,
                  trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("chatbrush").critical("stopped by an error nothing caught",
                                            exc_info=(kind, error, trace))


def setup_logging(secrets: Iterable[str], *, level: int = logging.INFO,
                  chatty: Iterable[str] = ()) -> RedactSecrets:
    """Log to stderr at ``level`` with secrets masked in every record, whichever logger
    made it (see :func:`secret_values` and :func:`add_secret`). The filter sits on the root
    handler, not on loggers, because a logger's filters do not see its children's records.
    ``chatty`` names more loggers held at WARNING like the HTTP clients' (the platforms'
    SDKs), unless ``level`` is DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # what would reach stderr around the logs: warnings (a library's may quote a URL) and
    # the traceback of an error nothing caught
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    # Request lines of HTTP clients and the SDKs' chatter are noise at INFO; at DEBUG the
    # operator asked for them.
    for noisy in ("httpx", "httpcore", "aiohttp.access", *chatty):
        logging.getLogger(noisy).setLevel(level if level <= logging.DEBUG
                                          else max(level, logging.WARNING))
    return redactor
