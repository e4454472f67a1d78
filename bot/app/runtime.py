"""Building a ready bot: the store, the model, the turn service behind its router and the
intake, opened and closed together (in the reverse order, and never under a running
turn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points

from bot.core.config import Settings, SettingsError
from bot.core.store import Store
from bot.flow.intake import Intake
from bot.flow.router import Router
from bot.flow.turns import TurnService
from bot.kit.memory import freeze_start_up, limit_malloc_arenas
from bot.models.base import ImageModel
from bot.models.catalog import ModelCatalog
from bot.policy.retention import RetentionTask
from bot.provenance.outgoing import open_credentials

STORE_ENTRY_POINTS = "chatbrush.stores"


def choose_model(settings: Settings, *, demo: bool = False) -> ImageModel:
    """The demo model when asked for, else the catalog's default model (Gemini, or an
    OpenAI-compatible endpoint with CHATBRUSH_PROVIDER=openai; each needs its key)."""
    if demo:
        from bot.models.demo import DemoModel

        return DemoModel()
    catalog = ModelCatalog.from_settings(settings)
    return catalog.create(catalog.default)


def store_url(settings: Settings) -> str:
    """``DATABASE_URL`` (PostgreSQL) when set, else the SQLite file ``CHATBRUSH_DB``."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return settings.chatbrush_db


async def open_store(settings: Settings) -> Store:
    """The backend for the configured URL, found through the ``chatbrush.stores`` entry
    points (the core imports no storage module)."""
    url = store_url(settings)
    scheme = url.split("://", 1)[0].lower() if "://" in url else "sqlite"
    name = "postgres" if scheme in ("postgres", "postgresql") else scheme
    found = {ep.name: ep for ep in entry_points(group=STORE_ENTRY_POINTS)}
    if name not in found:
        raise SettingsError(f"no storage backend for {scheme}:// URLs is installed")
    opener = found[name].load()
    try:
        store: Store = await opener(url, settings)
    except ConnectionError as exc:  # an unreachable server: one line, no traceback
        raise SettingsError(f"DATABASE_URL: {exc}") from None
    return store


@dataclass(frozen=True)
class Runtime:
    store: Store
    model: ImageModel
    turns: TurnService
    intake: Intake
    #: the background purge, with CHATBRUSH_RETENTION_DAYS
    retention: RetentionTask | None = None


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, model: ImageModel | None = None, demo: bool = False,
    catalog: ModelCatalog | None = None,
) -> AsyncIterator[Runtime]:
    """``catalog`` holds the models chats may choose (made from the settings unless a
    ``model`` or ``demo`` is given); the runtime closes it with everything else."""
    limit_malloc_arenas()  # before the worker threads start
    if model is None and not demo and catalog is None:
        catalog = ModelCatalog.from_settings(settings)
    model = model or choose_model(settings, demo=demo)
    store: Store | None = None
    try:
        store = await open_store(settings)  # first: a busy SQLite file stops it in one line
        credentials = await open_credentials(settings, store_url(settings))
        turns = TurnService(store, model, settings, catalog=catalog, credentials=credentials)
    except BaseException:
        await model.aclose()
        if catalog is not None:
            await catalog.aclose()
        if store is not None:
            await store.close()
        raise
    intake = Intake(store, Router(turns), settings)
    days = settings.chatbrush_retention_days
    retention = RetentionTask(store, days=days) if days else None
    try:
        if retention is not None:
            retention.start()
        freeze_start_up()  # what is alive now lives as long as the process
        yield Runtime(store, model, turns, intake, retention)
    finally:
        try:
            if retention is not None:
                await retention.stop()
            await intake.stop(grace=settings.chatbrush_shutdown_grace)
        finally:
            try:
                await model.aclose()
                if catalog is not None:
                    await catalog.aclose()
            finally:
                await store.close()
