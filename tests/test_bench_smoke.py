"""The conversation-core benchmarks still run against the current code.

Each script runs as a user would start it (a subprocess, tiny sizes) so an API change in
the engine, the store or the context policy breaks this test instead of silently rotting
the benchmark. No timing is asserted: speed belongs in the results files, not in tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, tmp_path: Path, *args: str) -> tuple[str, str]:
    out = tmp_path / f"{script}.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--turns", "5", "--quick",
         "--out", str(out), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out.read_text()


def row(table: str, first_cell: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{table}")


def test_context_bench_prints_policy_against_naive_history(tmp_path: Path) -> None:
    stdout, markdown = run_bench("bench_context.py", tmp_path)
    header = row(stdout, "turn")
    turn5 = dict(zip(header, row(stdout, "5"), strict=True))
    assert turn5["images in history"] == "5"
    # the policy holds 2.5 Flash to its 3-image cap while the naive request carries all 5
    assert turn5["2.5 Flash images"] == "3"
    assert float(turn5["2.5 Flash JSON MB"]) < float(turn5["naive JSON MB"])
    assert "| 5 |" in markdown and "## Reproduce" in markdown
    assert "python bench/bench_context.py --turns 5 --quick" in markdown


def test_engine_bench_drives_a_thread_and_the_commands(tmp_path: Path) -> None:
    stdout, markdown = run_bench("bench_engine.py", tmp_path)
    for what in ("text edits (2..N), wall clock", "/history on the finished thread",
                 "/undo, one step at a time from the head"):
        line = next((ln for ln in stdout.splitlines() if what in ln), None)
        assert line is not None, stdout
        assert re.search(r"\| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", line), line
    assert "p50 per turn minus image work" in stdout
    assert "## Reproduce" in markdown and "bench/bench_engine.py --turns 5 --quick" in markdown
