"""Mark the spot, end to end (issue 22): a marked copy becomes a region edit, the model's
answer is put back into the original inside the region only, and the turn keeps the
region (both storage backends) for the sheet, the export and "try again"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.events import ChatKey
from bot.core.ports.threads import NewImage, NewPart, NewRegion
from bot.core.store import Store
from bot.core.threads import Role
from tests.backends import BACKENDS, open_backend

CHAT = ChatKey("telegram", "-100", None)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request.param, tmp_path) as opened:
        yield opened


async def test_a_turn_keeps_its_region_and_picture_until_the_thread_goes(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.MODEL,
                                parts=[NewPart(text="done")])
    unblended = NewImage(b"the model's own picture", "image/png", 8, 6)
    await store.set_turn_region(turn.id, NewRegion(b"mask png", 640, 480, unblended))
    found = await store.turn_regions([turn.id, turn.id + 99])
    assert list(found) == [turn.id]
    region = found[turn.id]
    assert (region.mask_png, region.width, region.height) == (b"mask png", 640, 480)
    assert region.image is not None and (region.image.width, region.image.height) == (8, 6)
    assert await store.image_bytes(region.image.sha256) == unblended.data
    await store.delete_thread(thread.id)
    assert await store.turn_regions([turn.id]) == {}
    with pytest.raises(KeyError):
        await store.image_bytes(region.image.sha256)
