"""Building a ready engine: the store, the model and the engine, opened and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.engine import Engine
from bot.models.base import ImageModel
from storage.sqlite import AsyncStore


def choose_model(settings: Settings, *, demo: bool = False) -> ImageModel:
    """The demo model when asked for, else the catalog's default model (Gemini, or an
    OpenAI-compatible endpoint with CHATBRUSH_PROVIDER=openai; each needs its key)."""
    if demo:
        from bot.models.demo import DemoModel

        return DemoModel()
    from bot.models.catalog import ModelCatalog

    catalog = ModelCatalog.from_settings(settings)
    return catalog.create(catalog.default)


@asynccontextmanager
async def open_engine(
    settings: Settings, *, model: ImageModel | None = None, demo: bool = False
) -> AsyncIterator[Engine]:
    model = model or choose_model(settings, demo=demo)
    store = await AsyncStore.open(settings.chatbrush_db)
    try:
        yield Engine(store, model, settings)
    finally:
        try:
            await model.aclose()
        finally:
            await store.close()
