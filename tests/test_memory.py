"""The malloc arena cap: set on glibc unless the operator chose one."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def run(code: str, **env: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin", **env}).stdout.strip()


def test_a_fresh_process_gets_two_arenas_and_an_operators_choice_is_kept() -> None:
    code = "from bot.kit.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    assert run(code) == "True"
    assert run(code, MALLOC_ARENA_MAX="4") == "False"


def test_a_runtime_freezes_what_start_up_left_for_the_collector() -> None:
    code = """
import asyncio, gc, tempfile
from bot.core.config import Settings
from bot.app.runtime import open_runtime
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, chatbrush_db=f"{tmp}/bot.db")
        before = gc.get_freeze_count()
        async with open_runtime(settings, demo=True):
            print(before, gc.get_freeze_count())
asyncio.run(main())
"""
    before, during = map(int, run(code).split())
    assert before == 0 and during > 50_000  # the imported libraries' objects
