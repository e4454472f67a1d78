"""Sizes and money as people read them: one wording for every message, page and log line.

Sizes are decimal (1 kB = 1000 bytes), as the limits are configured and as phones and
Slack show file sizes. Each figure is cut, never rounded, to the digits shown, so a unit
never reads "1000 kB" and a limit is never shown above what it allows.

Money is kept as whole micro-dollars (millionths of a US dollar, see
:mod:`bot.models.pricing`); it is shown in cents, or, below a cent, with the two
significant digits that tell one small amount from another.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

MICROS_PER_USD: Final = 1_000_000
_CENT_MICROS: Final = MICROS_PER_USD // 100


def usd(micros: int) -> float:
    """Micro-dollars (what the bot counts in) as dollars, for metrics and exports."""
    return micros / MICROS_PER_USD


def readable_size(size: int) -> str:
    """``512 B``, ``270 kB``, ``3.4 MB``, ``1.2 GB``."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size // 1000} kB"
    if size < 1_000_000_000:
        return f"{size // 100_000 / 10:.1f} MB"
    return f"{size // 100_000_000 / 10:.1f} GB"


def dollars(micros: int) -> str:
    """``$0.04``, ``$1,234.50``; below a cent ``$0.0039`` or ``$0.000001``, not ``$0.00``."""
    amount = Decimal(abs(micros)).scaleb(-6)
    if micros == 0 or abs(micros) >= _CENT_MICROS:
        text = f"{amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"
    else:
        places = Decimal(1).scaleb(amount.adjusted() - 1)  # two significant digits
        text = f"{amount.quantize(places, ROUND_HALF_UP):f}".rstrip("0")
        if len(text.partition(".")[2]) < 2:  # 9_999 micros: "0.010" -> "0.01"
            text = f"{Decimal(text):.2f}"
    return f"-${text}" if micros < 0 else f"${text}"
