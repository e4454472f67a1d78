"""Who may use the bot, who administers a chat: one policy for every platform.

Allow-lists come from each platform's settings group (its ``*_ALLOWED_*`` variables,
:meth:`bot.core.platforms.PlatformSettings.allow_list`); admin rights from
``CHATBRUSH_ADMINS`` or the platform's own roles, asked through
:meth:`bot.core.events.Channel.is_admin` and remembered briefly so a burst of admin commands
does not spend the platform's rate limits. A platform may declare that whoever sends from it
runs the bot (:attr:`bot.core.platforms.PlatformInfo.senders_are_operators`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from bot.core.config import Settings
from bot.core.events import Channel, ChatKey, Incoming
from bot.core.platforms import AllowList, platform_info, registered

log = logging.getLogger(__name__)

#: entries kept before old ones are swept, so a long-running bot's memory stays flat
_MAX_ENTRIES = 4096


class AccessPolicy:
    """A message is answered when its platform has no allow-list, or when its chat *or*
    its sender is listed."""

    def __init__(self, lists: Mapping[str, AllowList]) -> None:
        self._lists = dict(lists)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Every registered platform's allow-list, as its settings group says."""
        return cls({name: info.settings.of(settings).allow_list()
                    for name, info in registered().items()})

    def allows(self, event: Incoming) -> bool:
        allow = self._lists.get(event.platform)
        return allow is None or allow.allows(event)


class RefusalThrottle:
    """One polite refusal per chat now and then: a busy group of strangers must not make
    the bot spam its "not available here" line."""

    def __init__(self, *, every_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every_seconds
        self._clock = clock
        self._last: dict[ChatKey, float] = {}

    def should_say(self, chat: ChatKey) -> bool:
        now = self._clock()
        if now - self._last.get(chat, -1e18) < self._every:
            return False
        if len(self._last) >= _MAX_ENTRIES:
            self._last = {k: t for k, t in self._last.items() if now - t < self._every}
        self._last[chat] = now
        return True


class AdminCache:
    """Chat admin checks: ``CHATBRUSH_ADMINS`` first, then the platform's roles, cached."""

    def __init__(self, settings: Settings, *, ttl_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, bool]] = {}

    def is_operator(self, event: Incoming) -> bool:
        """Runs the bot (``CHATBRUSH_ADMINS``, or anyone on a platform whose senders all
        do, like the console): may see bot-wide figures, which no chat admin should see of
        other chats."""
        return platform_info(event.platform).senders_are_operators or (
            self._settings.is_global_admin(event.platform, event.sender.id))

    async def is_admin(self, event: Incoming, channel: Channel) -> bool:
        if self._settings.is_global_admin(event.platform, event.sender.id):
            return True
        if event.is_private:
            return True  # everyone administers their own private chat
        key = (event.platform, event.chat.chat_id, event.sender.id)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        try:
            admin = await channel.is_admin(event.sender)
        except Exception:
            log.warning("admin check failed in %s", event.chat, exc_info=True)
            return False  # not cached: the next attempt asks again
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if now < v[0]}
        self._cache[key] = (now + self._ttl, admin)
        return admin
