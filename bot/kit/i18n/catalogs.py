"""Keeping the catalogs in step with the code, with Babel.

Every string marked ``_()``, ``N_()`` or ``ngettext()`` in ``bot/`` and ``adapters/`` is
extracted into ``chatbrush.pot``; each language's ``.po`` is merged with it (new messages
appear untranslated, removed ones become obsolete). Run after changing a user-facing line:

    python -m bot.kit.i18n.catalogs

then translate what is new in ``locales/zh_Hans/LC_MESSAGES/chatbrush.po`` (a test fails
while a message has no translation, or one with different placeholders).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from bot.kit.i18n import DOMAIN, LANGUAGES, LOCALES

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = Path(__file__).parent / f"{DOMAIN}.pot"
SOURCES = ("bot", "adapters")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
#: the header line Babel stamps with the time of every run
_CREATION_DATE = re.compile(r'^"POT-Creation-Date: .*\\n"$', re.MULTILINE)


def extract() -> Catalog:
    """The messages the code marks, each with the files it appears in (the template
    names files without line numbers, so that moving code does not change it)."""
    catalog = Catalog(project="chatbrush", domain=DOMAIN, charset="utf-8",
                      copyright_holder="Chatbrush contributors", fuzzy=False)
    for source in SOURCES:
        for filename, lineno, message, comments, context in extract_from_dir(
            ROOT / source, method_map=[("**.py", "python")], keywords=KEYWORDS,
            comment_tags=("TRANSLATORS:",), strip_comment_tags=True,
        ):
            catalog.add(message, locations=[(f"{source}/{filename}", lineno)],
                        auto_comments=comments, context=context)
    return catalog


def render(catalog: Catalog) -> str:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=88, include_lineno=False, sort_output=True,
             omit_header=False)
    return buffer.getvalue().decode("utf-8")


def po_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless ``path`` already says the same (but for the creation date
    Babel stamps on every run): a run with no new message leaves the tree clean."""
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old is not None and _CREATION_DATE.sub("", old) == _CREATION_DATE.sub("", text):
        return False
    path.write_text(text, encoding="utf-8")
    return True


def update() -> None:
    """Rewrite the template and merge it into every language's catalog (files whose
    messages did not change are left untouched)."""
    template = extract()
    write_if_changed(TEMPLATE, render(template))
    for language in LANGUAGES[1:]:
        path = po_path(language)
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language.replace("_Hans", ""))
        catalog.update(template, no_fuzzy_matching=True)
        write_if_changed(path, render(catalog))


if __name__ == "__main__":
    update()
