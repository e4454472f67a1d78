"""How the core finds and runs platform adapters without importing them.

The core never imports ``adapters/`` or a platform SDK. Adapters register themselves
as entry points in the ``chatbrush.adapters`` group (see ``pyproject.toml``); each entry
point is a factory ``create(settings, intake) -> Adapter | None`` that returns ``None``
when its platform is not configured. ``chatbrush run`` and ``chatbrush web`` load them
by name at run time only.

An adapter only translates: platform payloads into :class:`bot.core.events.Incoming` handed to
:meth:`bot.flow.intake.Intake.receive`, and the core's answers into platform calls through the
:class:`bot.core.events.Channel` it builds for each event.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from bot.core.events import Platform

if TYPE_CHECKING:
    from aiohttp import web

    from bot.core.config import Settings
    from bot.flow.intake import Intake

ENTRY_POINT_GROUP = "chatbrush.adapters"


class Adapter(Platform, Protocol):
    def mount(self, web_app: web.Application) -> bool:
        """Add webhook/HTTP routes to ``web_app``; ``False`` if there are none to add."""
        ...

    async def start(self, *, webhook: bool) -> None:
        """Connect and begin receiving (poll, open a socket, or register a webhook);
        returns once running. A configuration problem raises ``SettingsError``."""
        ...

    async def stop_receiving(self) -> None:
        """Take no new events (the first step of a shutdown); sends still work."""
        ...

    async def close(self) -> None:
        """Release connections: called after every running turn has finished."""
        ...


class AdapterFactory(Protocol):
    def __call__(self, settings: Settings, intake: Intake) -> Adapter | None: ...


def adapter_factories(names: set[str] | None = None) -> dict[str, AdapterFactory]:
    """The installed adapter factories, by entry-point name (``telegram``, ``slack``…)."""
    found: dict[str, AdapterFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if names is None or ep.name in names:
            found[ep.name] = ep.load()
    return found
