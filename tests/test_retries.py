"""A bare "try again" reruns the failed instruction; anything more is a new one."""

from __future__ import annotations

import pytest

from bot.flow.retry_phrases import asks_to_retry


@pytest.mark.parametrize("text", [
    "try again", "Try again!", "please try again", "try again please", "again", "retry",
    "one more time", "do it again", "Try it again.", "重试", "再试一次", "再来一次。", "请重试",
    "再试一下吧",
])
def test_bare_retries(text: str) -> None:
    assert asks_to_retry(text)


@pytest.mark.parametrize("text", [
    "try again but make it blue", "again with a hat", "make it red", "", "retry the sky",
    "再试一次，但是换成蓝色", "again and again and again is the title",
])
def test_new_instructions(text: str) -> None:
    assert not asks_to_retry(text)
