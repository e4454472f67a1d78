"""Memory settings for a long-running process: fewer malloc arenas, a frozen start-up.

*Fewer malloc arenas*, so a busy process gives its picture buffers back to itself.

glibc gives each thread that allocates under contention an arena of its own, up to eight
per core. The bot's worker threads (SQLite, blob files, signing, image checks) each touch
megabyte-sized picture buffers, and every arena keeps the high-water mark of its own
heap: 500 edits at once peaked 47 MB higher with the default than with two arenas, at the
same throughput (``bench/results/telegram.md``). ``MALLOC_ARENA_MAX`` in the environment
still wins; other C libraries are left alone.

*A frozen start-up.* The libraries a bot imports leave a few hundred thousand objects
that live as long as the process, and every full garbage collection walks them all: on a
300-turn thread one edit in 300 took 3× the median while it did. Frozen once the bot is
set up, they are never walked again (text edit 17.9 -> 16.7 ms of CPU, slowest edit
55 -> 26 ms, ``bench/results/engine.md``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas for threads that start from now on; True when it was set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to cap
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas))
    if not done:
        log.debug("mallopt(M_ARENA_MAX) was refused")
    return done


def freeze_start_up() -> None:
    """Move everything alive now out of the collector's sight (see the module's docstring)."""
    gc.collect()
    gc.freeze()
