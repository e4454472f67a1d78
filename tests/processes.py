"""Running ``python -m bot`` as a user would, with only the variables a test gives it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUR_PREFIXES = ("GEMINI_", "TELEGRAM_", "SLACK_", "CHATBRUSH_")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus every Chatbrush setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(OUR_PREFIXES) and k not in ("PORT", "DATABASE_URL")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


async def start_chatbrush(args: list[str], cwd: Path, env: Mapping[str, str], *,
                          log: Path | None = None) -> asyncio.subprocess.Process:
    """Start ``chatbrush ARGS`` in the background (for servers stopped with a signal).

    With ``log``, stdout and stderr go to that file (a busy bot would fill a pipe nobody
    reads, and block on it); otherwise they are pipes for ``communicate()``.
    """
    if log is None:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=cwd, env=clean_environment(env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=cwd, env=clean_environment(env),
            stdout=sink, stderr=sink,
        )


def run_chatbrush(args: list[str], stdin: str, cwd: Path, env: Mapping[str, str]
                  ) -> subprocess.CompletedProcess[str]:
    """Run ``chatbrush ARGS`` to completion, feeding ``stdin``."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True,
        cwd=cwd, env=clean_environment(env), timeout=120, check=False,
    )
