"""Languages: a platform's tag picks the catalog, per message, without threading it through."""

from __future__ import annotations

import asyncio

import pytest

from bot.i18n import _, current_language, normalize, speaking


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
