"""Did the service honour the size and aspect ratio a call asked for? Pure functions.

Some relays silently drop ``imageConfig``: the user asked for 4K and gets 1K with no word
why. The answer's picture says what happened: its pixel count names the size class
(1K ≈ 1024², 2K ≈ 2048², 4K ≈ 4096², whatever the shape: 16:9 at 1K is 1376×768), its
sides the aspect ratio. Both are compared with a tolerance, so the service's own
rounding (3:2 at 1K is 1264×848) is no mismatch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Final

#: a ratio this far off (5 %) is another shape; the service's rounding stays within 1 %
ASPECT_TOLERANCE: Final = math.log(1.05)
SIZES: Final = ("1K", "2K", "4K")
#: the name of the chat setting that remembers what the service ignored (internal)
STORED_AS: Final = "ignored_by_service"


@dataclass(frozen=True)
class Ignored:
    """One setting the answer did not follow: ``setting`` is "size" or "aspect"."""

    setting: str
    asked: str
    got: str


def size_class(width: int, height: int) -> str:
    """"1K", "2K" or "4K" by pixel count, or the sides when the picture is of none."""
    steps = math.log(max(1, width * height) / 1024**2, 4)
    index = round(steps)
    if 0 <= index < len(SIZES) and abs(steps - index) < 0.5:
        return SIZES[index]
    return f"{width}×{height}"


def ratio_of(text: str) -> float | None:
    """``"16:9"`` → 1.777…; None for anything else."""
    a, sep, b = text.partition(":")
    try:
        ratio = float(a) / float(b) if sep else None
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio and ratio > 0 else None


def ignored(width: int, height: int, *, size: str | None,
            aspect: str | None) -> list[Ignored]:
    """What of ``size`` and ``aspect`` (as asked; None: not asked) a ``width`` ×
    ``height`` answer did not follow."""
    found: list[Ignored] = []
    if width <= 0 or height <= 0:
        return found
    if size and size.upper() in SIZES and size_class(width, height) != size.upper():
        found.append(Ignored("size", size.upper(), f"{size_class(width, height)} "
                                                   f"({width}×{height})"))
    wanted = ratio_of(aspect or "")
    if wanted and abs(math.log(width / height / wanted)) > ASPECT_TOLERANCE:
        divisor = math.gcd(width, height)
        found.append(Ignored("aspect", str(aspect), f"{width // divisor}:{height // divisor} "
                                                    f"({width}×{height})"))
    return found


@dataclass(frozen=True)
class Remembered:
    """What a chat was told: per setting, what was asked, what came back, and whether
    the newest answer asked for it still came back wrong (``still``)."""

    asked: str
    got: str
    still: bool = True


def load(text: str | None) -> dict[str, Remembered]:
    """The stored record; an unreadable one is an empty record (told again, once)."""
    try:
        raw = json.loads(text or "{}")
        return {name: Remembered(str(v["asked"]), str(v["got"]), bool(v.get("still", True)))
                for name, v in raw.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def dump(record: dict[str, Remembered]) -> str:
    return json.dumps({name: {"asked": r.asked, "got": r.got, "still": r.still}
                       for name, r in sorted(record.items())}, ensure_ascii=False)


def update(record: dict[str, Remembered], found: list[Ignored], asked: dict[str, str]
           ) -> tuple[dict[str, Remembered], list[Ignored]]:
    """The record after an answer that asked ``asked`` ({setting: value}) and did not
    follow ``found``; and what of ``found`` the chat has not been told yet."""
    new = dict(record)
    untold = []
    missed = {i.setting: i for i in found}
    for setting, value in asked.items():
        before = record.get(setting)
        if setting in missed:
            if before is None or before.asked != value:
                untold.append(missed[setting])
            new[setting] = Remembered(value, missed[setting].got)
        elif before is not None and before.asked == value and before.still:
            new[setting] = Remembered(before.asked, before.got, still=False)
    return new, untold
