"""Building a ready engine: the store, the model and the engine, opened and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.engine import Engine
from bot.models.base import ImageModel
from storage.sqlite import AsyncStore


def choose_model(settings: Settings, *, demo: bool = False) -> ImageModel:
    """The demo model when asked for, else Gemini (which needs GEMINI_API_KEY)."""
    if demo:
        from bot.models.demo import DemoModel

        return DemoModel()
    from bot.models.gemini import GeminiModel

    return GeminiModel.from_settings(settings)


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
