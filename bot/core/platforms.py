"""How the core knows the platforms without naming one: each registers what the core needs.

The core never imports ``adapters/`` or a platform SDK. Each adapter package publishes a
:class:`PlatformInfo` as an entry point in the ``chatbrush.platforms`` group (see
``pyproject.toml``): its /help wording, its settings group (a :class:`PlatformSettings`
read from the same environment and ``.env``, which also answers "is it configured?", its
allow-list and its album debounce), whether whoever sends from it runs the bot, and the
factory that builds its adapter. The core looks a platform up by ``event.platform``
(:func:`platform_info`); a platform nobody registered gets the plain defaults.

An adapter only translates: platform payloads into :class:`bot.core.events.Incoming` handed to
:meth:`bot.flow.intake.Intake.receive`, and the core's answers into platform calls through the
:class:`bot.core.events.Channel` it builds for each event (which also answers whether a
sender administers the chat).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, Self

from pydantic_settings import BaseSettings

from bot.core.config import SETTINGS_CONFIG, Settings
from bot.core.events import ChatKey, Incoming, Platform
from bot.core.receiving import Receiver

if TYPE_CHECKING:
    from aiohttp import web


ENTRY_POINT_GROUP = "chatbrush.platforms"


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
    def __call__(self, settings: Settings, intake: Receiver) -> Adapter | None: ...


@dataclass(frozen=True)
class AllowList:
    """Where a platform's bot answers: in the listed chats, and to the listed people
    anywhere; empty, everywhere. A platform with other scopes (a server holding many
    chats) returns a subclass from its settings group that widens :meth:`allows`."""

    chats: frozenset[str] = frozenset()
    #: user ids, or ``@usernames`` (compared without the ``@``, case-insensitively)
    users: frozenset[str] = frozenset()

    @property
    def open(self) -> bool:
        return not self.chats and not self.users

    def allows(self, event: Incoming) -> bool:
        if self.open or event.chat.chat_id in self.chats or event.sender.id in self.users:
            return True
        names = {u.lower().lstrip("@") for u in self.users if not u.lstrip("-").isdigit()}
        username = event.sender.username.lower()
        return bool(username) and username in names


class PlatformSettings(BaseSettings):
    """A platform's own settings group, defined in its adapter package and read from the
    same environment and ``.env`` as the core :class:`Settings` (no prefix: the variable
    names stay those the README documents). Subclasses add fields and override what their
    platform has; this base is also the group of a platform without settings."""

    model_config = SETTINGS_CONFIG

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """This group as ``settings`` sees it (values given to it by name included)."""
        return settings.group(cls)

    def configured(self) -> bool:
        """Whether the operator set this platform up, so ``chatbrush`` runs it rather than
        the demo console (its factory may still find something missing, and say so)."""
        return False

    def allow_list(self) -> AllowList:
        return AllowList()

    def album_debounce(self) -> float:
        """Seconds to wait for the rest of a message group (an album sent as several
        messages) after its newest part; platforms that send one message never wait."""
        return 0.0


@dataclass(frozen=True)
class SendPace:
    """How many messages a platform lets a bot send to one chat within ``seconds``:
    the core's deliveries wait for it before taking a shared place
    (:mod:`bot.flow.pacing`)."""

    messages: int
    seconds: float


@dataclass(frozen=True)
class PlatformInfo:
    """What the core needs to know of one platform, registered by its adapter."""

    #: the name events carry (:attr:`bot.core.events.ChatKey.platform`)
    name: str
    #: how people and operators call it ("Telegram")
    title: str = ""
    #: the /help tips, ``N_()``-marked, translated when /help is sent
    help_tips: tuple[str, ...] = ()
    settings: type[PlatformSettings] = PlatformSettings
    #: builds the adapter for ``chatbrush run``/``web``; None when it runs its own way
    create: AdapterFactory | None = None
    #: the settings to set to turn it on, for the line saying no platform is configured
    setup_hint: str = ""
    #: whoever sends from here runs the bot (the person at the terminal), like
    #: ``CHATBRUSH_ADMINS``
    senders_are_operators: bool = field(default=False, kw_only=True)
    #: the platform's send limit for one chat (None: not paced per chat)
    send_pace: Callable[[ChatKey], SendPace | None] | None = field(default=None,
                                                                  kw_only=True)
    #: its SDK's loggers that are noise below WARNING unless the operator asks for DEBUG
    chatty_loggers: tuple[str, ...] = field(default=(), kw_only=True)


_registry: dict[str, PlatformInfo] = {}
_entry_points_loaded = False


def register(info: PlatformInfo) -> None:
    """Make ``info`` known to the core: what the loader does for each installed entry
    point, and what a test does for a platform of its own (a later one of the same name
    replaces the earlier)."""
    _registry[info.name] = info


def registered() -> Mapping[str, PlatformInfo]:
    """Every platform known, by name: the installed entry points (loaded once) and any
    registered directly."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _registry:
                info = ep.load()
                if not isinstance(info, PlatformInfo) or info.name != ep.name:
                    raise TypeError(f"entry point {ep.name} ({ep.value}) is not the "
                                    f"PlatformInfo of a platform named {ep.name!r}")
                register(info)
    return MappingProxyType(_registry)


def platform_info(name: str) -> PlatformInfo:
    """The registered platform ``name``, or one with the defaults when none is."""
    return registered().get(name) or PlatformInfo(name)


def platform_settings(name: str, settings: Settings) -> PlatformSettings:
    """The settings group of platform ``name``; a ``SettingsError`` names a bad value."""
    return platform_info(name).settings.of(settings)


def configured_platforms(settings: Settings) -> list[PlatformInfo]:
    """The platforms with an adapter that the operator set up. Reads every group, so a
    malformed value of any platform is reported here, at start-up."""
    infos = list(registered().values())
    groups = {info.name: info.settings.of(settings) for info in infos}
    return [info for info in infos if info.create is not None and groups[info.name].configured()]


def adapter_factories(names: set[str] | None = None) -> dict[str, AdapterFactory]:
    """The registered adapter factories, by platform name."""
    return {name: info.create for name, info in registered().items()
            if info.create is not None and (names is None or name in names)}
