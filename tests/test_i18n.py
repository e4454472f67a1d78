"""Languages: a platform's tag picks the catalog, per message, without threading it through;
the catalogs hold every message the code marks, translated with the same placeholders."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.kit.i18n import LANGUAGES, _, current_language, ngettext, normalize, speaking
from bot.kit.i18n.catalogs import TEMPLATE, extract, po_path


@pytest.mark.parametrize(("tag", "language"), [
    ("zh-hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("zh_SG", "zh_Hans"), ("zh", "zh_Hans"),
    ("zh-Hant-TW", "zh_Hans"), ("en", "en"), ("en-GB", "en"), ("de", "en"), (None, "en"),
    ("", "en"),
])
def test_platform_tags_map_to_a_catalog(tag: str | None, language: str) -> None:
    assert normalize(tag) == language


async def test_each_task_speaks_its_own_language() -> None:
    seen: dict[str, str] = {}

    async def handle(name: str, language: str) -> None:
        with speaking(language):
            await asyncio.sleep(0)  # another task runs in between
            seen[name] = current_language()

    await asyncio.gather(handle("ann", "zh_Hans"), handle("bob", "en"))
    assert seen == {"ann": "zh_Hans", "bob": "en"}
    assert current_language() == "en"
    assert _("Unknown text stays as written.") == "Unknown text stays as written."


# ---------------------------------------------------------------------- the catalogs
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def test_the_template_is_up_to_date_with_the_code() -> None:
    fresh = {m.id: sorted({path for path, _line in m.locations}) for m in extract() if m.id}
    stored = {m.id: sorted({path for path, _line in m.locations}) for m in read(TEMPLATE)
              if m.id}
    assert fresh.keys() - stored.keys() == set(), "run: python -m bot.kit.i18n.catalogs"
    assert stored.keys() - fresh.keys() == set(), "run: python -m bot.kit.i18n.catalogs"
    assert fresh == stored


@pytest.mark.parametrize("language", LANGUAGES[1:])
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    template = read(TEMPLATE)
    catalog = read(po_path(language))
    translated = {m.id: m for m in catalog if m.id}
    for message in template:
        if not message.id:
            continue
        found = translated.get(message.id)
        assert found is not None and not found.fuzzy, f"untranslated: {message.id!r}"
        if isinstance(message.id, tuple):
            expected = placeholders(message.id[1])
            forms = list(found.string)
        else:
            expected = placeholders(message.id)
            forms = [found.string]
        for form in forms:
            assert form, f"empty translation of {message.id!r}"
            assert placeholders(form) == expected, f"placeholders differ in {message.id!r}"
    assert translated.keys() <= {m.id for m in template}, "obsolete messages in the catalog"


def test_a_line_comes_out_in_chinese_with_its_values() -> None:
    with speaking("zh_Hans"):
        assert _("Image {index} of {count}: {reason}").format(
            index=2, count=3, reason="…") == "第 2 张图（共 3 张）：…"
        assert ngettext("Undid {count} version.", "Undid {count} versions.", 1).format(
            count=1) == "已撤销 1 个版本。"
    assert ngettext("Undid {count} version.", "Undid {count} versions.", 2).format(
        count=2) == "Undid 2 versions."
