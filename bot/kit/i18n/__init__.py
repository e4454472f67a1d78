"""Every user-facing line in English and Simplified Chinese, through gettext catalogs.

Strings are written in English in the code, marked ``_("…")`` where they are shown, or
``N_("…")`` where they are defined before anyone is there to read them (module constants,
translated later with ``_(CONSTANT)``). Babel extracts them into ``chatbrush.pot``; each
language has a ``.po`` catalog under ``locales/``, read at start-up with Babel (no compiled
``.mo`` files to keep in step). Which language a line comes out in is decided per message:
the intake runs each event inside :func:`speaking`, so ``_()`` needs no argument and code
that builds a reply deep inside a model client still answers in the user's language.
Placeholders are named (``{count}``) and filled after translation.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

DOMAIN = "chatbrush"
LOCALES = Path(__file__).parent / "locales"
DEFAULT = "en"
#: languages with a catalog; English is the source language
LANGUAGES = ("en", "zh_Hans")

_current: ContextVar[str] = ContextVar("chatbrush_language", default=DEFAULT)


def normalize(code: str | None) -> str:
    """A platform's language tag as one of :data:`LANGUAGES`: ``zh-hans``, ``zh-CN``,
    ``zh_SG``, ``zh`` … → ``zh_Hans``; anything we have no catalog for → English."""
    if not code:
        return DEFAULT
    tag = code.strip().replace("_", "-").lower()
    if tag == "zh" or tag.startswith("zh-"):
        # Traditional-script readers get Simplified: closer to them than English is
        return "zh_Hans"
    return DEFAULT


@cache
def _translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT:
        return gettext.NullTranslations()
    from babel.messages.pofile import read_po

    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language.replace("_Hans", ""))
    return _CatalogTranslations(catalog)


class _CatalogTranslations(gettext.NullTranslations):
    """gettext lookups served from a Babel catalog read from its ``.po`` file."""

    def __init__(self, catalog: object) -> None:
        super().__init__()
        self._singular: dict[str, str] = {}
        self._plural: dict[tuple[str, str], tuple[str, ...]] = {}
        for message in catalog:  # type: ignore[attr-defined]
            if not message.id or message.fuzzy or not message.string:
                continue
            if isinstance(message.id, tuple):
                forms = tuple(message.string)
                if all(forms):
                    self._plural[(message.id[0], message.id[1])] = forms
            else:
                self._singular[message.id] = message.string

    def gettext(self, message: str) -> str:
        return self._singular.get(message, message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        forms = self._plural.get((msgid1, msgid2))
        if forms is None:
            return msgid1 if n == 1 else msgid2
        return forms[0]  # Chinese has one plural form


def _(message: str) -> str:
    """``message`` in the language of the event being handled."""
    return _translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


def current_language() -> str:
    return _current.get()


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Within the block, ``_()`` answers in ``language`` (one of :data:`LANGUAGES`)."""
    token = _current.set(language if language in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)
