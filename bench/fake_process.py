"""A fake remote service in a process of its own, so the bot's process does only the bot's
work and its CPU time is the bot's alone.

The child runs ``python -m <module> serve-fake ...`` from the repository root and prints
one line (its base URL) when it listens; :func:`fake_process` yields that line and the
child's CPU seconds so far (to report what the machine spent on the fake).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def fake_process(module: str, *args: str) -> AsyncIterator[tuple[str, Callable[[], float]]]:
    """The fake's first line of output, and a function giving its CPU seconds so far."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "serve-fake", *args,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().strip()
        if not line:
            raise RuntimeError(f"{module} serve-fake exited before it listened")
        yield line, lambda: cpu_seconds_of(proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
