"""Several API keys for one service: calls spread across them, a key out of quota rests.

Image models often come with a tiny per-key quota, so operators run several keys
(``GEMINI_API_KEYS``). The pool hands each attempt the least recently used key that is
neither resting nor taken out; a key whose quota ran out rests (per model: quotas are per
model) until the time the service named, and a key the service refuses is taken out with
one log line. The pool never takes out its last live key: a single bad key keeps failing
each call with the usual "ask the operator" message, as it always did.

A key is shown only masked (:attr:`Key.label`), and :attr:`Key.fingerprint` names it
where something must be remembered per key (an uploaded file belongs to the key that
uploaded it: :meth:`KeyPool.choose` takes the key a call would rather use).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bot.models.base import ModelError

logger = logging.getLogger(__name__)

#: how long a key rests after a per-minute quota answer that named no time
DEFAULT_REST: Final = 60.0
#: and after a per-day quota answer (then looked at again, not a whole day later)
DEFAULT_DAILY_REST: Final = 3600.0


def mask(secret: str) -> str:
    """The first four characters and an ellipsis: enough to find the key, not to use it."""
    return f"{secret[:4]}…"


@dataclass(eq=False)
class Key:
    """One key and what it did; ``label`` is what logs and /stats show."""

    secret: str = field(repr=False)
    label: str
    fingerprint: str
    calls: int = 0
    failures: int = 0
    taken_out: bool = False
    last_used: float = float("-inf")
    #: model -> monotonic time the key may be used again for it
    resting_until: dict[str, float] = field(default_factory=dict)

    def free_at(self, model: str) -> float:
        return self.resting_until.get(model, float("-inf"))


@dataclass(frozen=True)
class KeyReport:
    label: str
    calls: int
    failures: int
    taken_out: bool
    resting: bool


class KeyFault(Exception):
    """An answer that blames the key rather than the call: its quota is spent (``rest``
    seconds, or None when the service named no time) or the key is refused
    (``refused``). ``error`` is what the call fails with if no other key can take it."""

    def __init__(self, error: ModelError, *, refused: bool = False,
                 rest: float | None = None, retry: bool = False) -> None:
        super().__init__(error.detail)
        self.error = error
        self.refused = refused
        self.rest = rest
        #: the call may try this key again after the rest (a per-minute quota)
        self.retry = retry


class KeyPool:
    """The keys of one provider, shared by every model built from the same settings."""

    def __init__(self, secrets: Iterable[str], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        unique = list(dict.fromkeys(s.strip() for s in secrets if s.strip()))
        if not unique:
            raise ValueError("a key pool needs at least one key")
        self.clock = clock
        self.keys = [
            Key(secret, f"key {n} ({mask(secret)})",
                hashlib.sha256(secret.encode()).hexdigest()[:12])
            for n, secret in enumerate(unique, start=1)
        ]

    def __repr__(self) -> str:  # never shows a key
        return f"KeyPool({', '.join(k.label for k in self.keys)})"

    @property
    def secrets(self) -> list[str]:
        return [k.secret for k in self.keys]

    def live(self) -> list[Key]:
        return [k for k in self.keys if not k.taken_out]

    def choose(self, model: str, *, prefer: str | None = None) -> Key | None:
        """A key free for ``model`` now — the one with fingerprint ``prefer`` if it is,
        else the least recently used — or None when every live key rests."""
        now = self.clock()
        free = [k for k in self.live() if k.free_at(model) <= now]
        if not free:
            return None
        chosen = next((k for k in free if k.fingerprint == prefer), None)
        chosen = chosen or min(free, key=lambda k: k.last_used)
        chosen.last_used = now
        return chosen

    def free_in(self, model: str) -> float:
        """Seconds until some live key is free for ``model`` (0: one is free now)."""
        now = self.clock()
        return max(0.0, min(k.free_at(model) for k in self.live()) - now)

    def earliest(self, model: str) -> Key:
        """The live key that is free first, its rest ended (the caller waited for it)."""
        key = min(self.live(), key=lambda k: (k.free_at(model), k.last_used))
        key.resting_until.pop(model, None)
        key.last_used = self.clock()
        return key

    def has_free(self, model: str) -> bool:
        now = self.clock()
        return any(k.free_at(model) <= now for k in self.live())

    def record(self, key: Key, *, failed: bool) -> None:
        key.calls += 1
        key.failures += int(failed)

    def rest(self, key: Key, model: str, seconds: float) -> None:
        until = self.clock() + max(0.0, seconds)
        key.resting_until[model] = max(until, key.free_at(model))
        logger.info("%s rests %.0fs for %s: its quota is spent", key.label, seconds, model)

    def take_out(self, key: Key, reason: str) -> bool:
        """Take ``key`` out for good, unless it is the last live one; True if it was."""
        if key.taken_out or len(self.live()) <= 1:
            return False
        key.taken_out = True
        logger.warning("%s taken out of the pool: the service refused it (%s)",
                       key.label, self.redact(reason)[:300])
        return True

    def redact(self, text: str) -> str:
        """``text`` without any key, in any case (services echo keys changed)."""
        for secret in self.secrets:
            text = re.sub(re.escape(secret), "[redacted]", text, flags=re.IGNORECASE)
        return text

    def report(self) -> list[KeyReport]:
        now = self.clock()
        return [KeyReport(k.label, k.calls, k.failures, k.taken_out,
                          any(t > now for t in k.resting_until.values()))
                for k in self.keys]
