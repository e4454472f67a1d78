"""How the core finds and runs platform adapters without importing them.

The core never imports ``adapters/`` or a platform SDK. Adapters register themselves
as entry points in the ``chatbrush.adapters`` group (see ``pyproject.toml``); each entry
point is a factory ``create(settings, engine) -> Adapter | None`` that returns ``None``
when its platform is not configured. ``chatbrush run`` and ``chatbrush web`` load them
by name at run time only.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from bot.config import Settings
    from bot.engine import Engine

ENTRY_POINT_GROUP = "chatbrush.adapters"


class Adapter(Protocol):
    name: str

    def mount(self, web_app: web.Application) -> bool:
        """Add webhook/HTTP routes to ``web_app``; ``False`` if there are none to add."""
        ...

    async def serve(self, *, webhook: bool) -> None:
        """Run until cancelled: poll / open a socket, or (``webhook``) only background work."""
        ...


class AdapterFactory(Protocol):
    def __call__(self, settings: Settings, engine: Engine) -> Adapter | None: ...


def adapter_factories(names: set[str] | None = None) -> dict[str, AdapterFactory]:
    """The installed adapter factories, by entry-point name (``telegram``, ``slack``…)."""
    found: dict[str, AdapterFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if names is None or ep.name in names:
            found[ep.name] = ep.load()
    return found
