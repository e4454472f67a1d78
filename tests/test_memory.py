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
    code = "from bot.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    assert run(code) == "True"
    assert run(code, MALLOC_ARENA_MAX="4") == "False"
