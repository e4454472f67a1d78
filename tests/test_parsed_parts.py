"""Parsed turn parts are reused while a turn's stored JSON is unchanged, and only then."""

from __future__ import annotations

import json

from bot.core.threads import StoredPart
from storage.parsed_parts import ParsedParts


def parse(raw: str) -> tuple[StoredPart, ...]:
    return tuple(StoredPart(text=item["text"]) for item in json.loads(raw))


def document(text: str, size: int = 4096) -> str:
    return json.dumps([{"text": text}, {"text": "S" * size}])


def test_a_long_turn_is_parsed_once_and_a_changed_one_again() -> None:
    calls: list[str] = []

    def counting(raw: str) -> tuple[StoredPart, ...]:
        calls.append(raw)
        return parse(raw)

    cache = ParsedParts(counting)
    first = cache.get(7, document("a hat"))
    again = cache.get(7, document("a hat"))
    assert again is first and len(calls) == 1
    scrubbed = cache.get(7, document("[removed]"))  # e.g. after /forget: never stale
    assert scrubbed[0].text == "[removed]" and len(calls) == 2


def test_memory_stays_under_the_byte_cap() -> None:
    cache = ParsedParts(parse, max_bytes=50_000)
    for turn in range(100):
        cache.get(turn, document(f"turn {turn}", size=10_000))
    assert cache.bytes_held <= 50_000
    assert cache.get(99, document("turn 99", size=10_000))[0].text == "turn 99"
