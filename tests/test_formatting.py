"""Sizes and money read the same in every message, page and log line."""

from __future__ import annotations

import pytest

from bot.kit.formatting import dollars, readable_size


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 B"),  # "removed 0 pictures, 0 B", not "1 kB"
    (1, "1 B"),
    (999, "999 B"),
    (1000, "1 kB"),
    (1023, "1 kB"),
    (1024, "1 kB"),
    (1025, "1 kB"),
    (270_600, "270 kB"),
    (999_999, "999 kB"),  # never "1000 kB"
    (1_000_000, "1.0 MB"),
    (3_450_000, "3.4 MB"),
    (12_000_000, "12.0 MB"),  # one wording: the Slack adapter said "12 MB", the core "12.0 MB"
    (20 * 1024 * 1024, "20.9 MB"),  # Telegram's 20 MiB is not shown above what it allows
    (999_999_999, "999.9 MB"),
    (1_000_000_000, "1.0 GB"),  # Slack's file limit, not "1000.0 MB"
])
def test_sizes_are_decimal_and_cut_to_the_digits_shown(size: int, shown: str) -> None:
    assert readable_size(size) == shown


@pytest.mark.parametrize(("micros", "shown"), [
    (0, "$0.00"),
    (38_721, "$0.04"),  # one Gemini 2.5 Flash Image edit
    (125_000, "$0.13"),  # half a cent rounds up, whatever binary floats would do
    (134_000, "$0.13"),
    (999_999, "$1.00"),
    (10_000, "$0.01"),
    (12_345_678, "$12.35"),
    (123_456_789_012, "$123,456.79"),
    (3_900, "$0.0039"),  # below a cent: two significant digits, never "$0.00"
    (1_200, "$0.0012"),
    (5_000, "$0.005"),
    (9_999, "$0.01"),  # rounds up to a cent: shown as one
    (123, "$0.00012"),
    (1, "$0.000001"),  # one micro-dollar
    (-38_721, "-$0.04"),
])
def test_money_is_shown_in_cents_and_small_amounts_stay_visible(micros: int, shown: str) -> None:
    assert dollars(micros) == shown
