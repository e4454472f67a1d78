"""What a benchmark reports about its own process: CPU time and resident memory.

CPU time is the whole process's (every thread: the event loop, the database thread, the
workers that encode requests and read answers), so "CPU ms per turn" is what the bot
costs, however it spreads the work. Memory is sampled while the load runs: the peak a
burst reaches, not what is left after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


def cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread, user and system."""
    return time.process_time()


def rss_mb() -> float:
    """Resident memory of this process now, in MB (VmRSS; peak RSS where /proc is absent)."""
    return memory_mb()[0]


def memory_mb() -> tuple[float, float]:
    """(resident, anonymous resident) memory now, in MB. Resident memory counts the shared
    libraries' pages too (about 50 MB here, shared with every other process using them);
    anonymous memory is the process's own."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    found[key] = int(value.split()[0]) / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak
    return found["VmRSS"], found.get("RssAnon", found["VmRSS"])


@dataclass
class Usage:
    """What a stretch of the process cost."""

    cpu_s: float = 0.0
    #: CPU seconds of the thread that ran the block: the event loop's own share
    loop_cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    anon_peak_mb: float = 0.0
    rss_after_mb: float = 0.0

    def cpu_ms_per(self, count: int) -> float:
        return self.cpu_s * 1000 / count if count else float("nan")


@contextlib.asynccontextmanager
async def measured(interval: float = 0.2) -> AsyncIterator[Usage]:
    """CPU and wall time of the block, and its resident memory sampled every ``interval``."""
    usage = Usage(rss_before_mb=rss_mb())

    def sample_once() -> None:
        rss, anon = memory_mb()
        usage.rss_peak_mb = max(usage.rss_peak_mb, rss)
        usage.anon_peak_mb = max(usage.anon_peak_mb, anon)

    async def sample() -> None:
        while True:
            sample_once()
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample())
    started_cpu, started = cpu_seconds(), time.perf_counter()
    started_loop = time.thread_time()
    try:
        yield usage
    finally:
        usage.cpu_s = cpu_seconds() - started_cpu
        usage.loop_cpu_s = time.thread_time() - started_loop
        usage.wall_s = time.perf_counter() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        sample_once()
        usage.rss_after_mb = rss_mb()


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())
