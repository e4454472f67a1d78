"""The benchmarks still run against the current code.

Each script runs as a user would start it (a subprocess, tiny sizes) so an API change in
the engine, the store, the intake, the adapters or the context policy breaks this test
instead of silently rotting the benchmark. No timing is asserted: speed belongs in the
results files, not in tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_module(module: str, *args: str, timeout: float = 90) -> str:
    """``python -m bench.<module> ARGS`` from the repository root; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def row(table: str, first_cell: str) -> list[str]:
    for line in table.splitlines():
        found = cells(line)
        if found and found[0] == first_cell:
            return found
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
    for what in ("text edits (2..N), wall clock", "text edits (2..N), CPU (every thread)",
                 "/history on the finished thread, wall clock",
                 "/undo, one step at a time from the head, wall clock"):
        line = next((ln for ln in stdout.splitlines() if what in ln), None)
        assert line is not None, stdout
        assert re.search(r"\| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", line), line
    assert re.search(r"CPU per text edit: [\d.]+ ms = [\d.]+× the reference", stdout)
    assert "Largest request: 3 images" in stdout  # real-sized answers went into the context
    reference = row(stdout, "the reference workload (parse one answer body, decode its "
                            "picture, SHA-256 it)")
    assert float(reference[1]) > 0 and reference[2] == "1.00"
    assert "## Reproduce" in markdown and "bench/bench_engine.py --turns 5 --quick" in markdown


@pytest.mark.slow
def test_telegram_bench_answers_every_turn_through_the_real_adapter() -> None:
    [overhead] = json.loads(run_module("bench_telegram", "--json", "overhead", "--turns", "3",
                                       "--warmup", "1"))
    assert overhead["turns"] == 3 and overhead["failures"] == 0
    for kind in ("new_photo", "text_followup"):
        assert overhead[kind]["p50_ms"] > 0 and overhead[kind]["cpu_ms_per_turn"] > 0
        assert overhead[kind]["cpu_x_reference"] > 0
    [concurrent] = json.loads(run_module("bench_telegram", "--json", "concurrency",
                                         "--threads", "3", "--turns", "2", "--latency", "0.2",
                                         "--no-limiter"))
    assert concurrent["threads"] == 3 and concurrent["failures"] == 0
    assert concurrent["time_to_answer"]["p50_ms"] >= 200  # the model's 0.2 s, and the bot's
    assert concurrent["rss_mb"]["peak"] >= concurrent["rss_mb"]["before"] > 0


def test_fairness_bench_times_quiet_chats_beside_a_flooded_group() -> None:
    result = json.loads(run_module("bench_fairness", "--json", "--flood", "30",
                                   "--flooders", "2", "--quiet", "3", "--latency", "0.2",
                                   "--quiet-after", "0.5"))
    assert result["quiet_failures"] == 0
    assert result["baseline"]["p50_s"] > 0 and result["with_flood"]["p50_s"] > 0
    assert result["flood_inbox"].get("refused", 0) > 0  # over the default 10 a minute


def test_slack_bench_acknowledges_and_uploads_every_event() -> None:
    result = json.loads(run_module("bench_slack", "--json", "--events", "3", "--warmup", "1"))
    assert result["events"] == 3
    assert result["ack_ms"]["p50"] > 0 and result["event_to_upload_ms"]["p50"] > 0
    assert result["cpu_ms_per_event"] > 0 and result["cpu_x_reference"] > 0


def test_storage_bench_compares_rows_and_blob_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_storage.py"), "--turns", "6", "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = row(proc.stdout, "files")
    assert files[-1] == "ok"  # integrity_check after storing the pictures as files
    assert not list(tmp_path.iterdir())


def test_budgets_bench_times_the_check_against_a_filled_month(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_budgets.py"), "--calls", "0", "500",
         "--repeat", "5", "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(row(proc.stdout, "500")[1]) > 0  # p50 of the check with 500 calls stored
    assert not list(tmp_path.iterdir())


def test_answers_bench_times_the_structure_walk_against_a_decode(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_answers.py"), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Reference workload" in proc.stdout
    assert "| PNG 256² |" in proc.stdout and "inspect_output (after)" in proc.stdout


@pytest.mark.slow
def test_preprocess_bench_runs_every_method_on_a_12_mp_photo(tmp_path: Path) -> None:
    out = tmp_path / "preprocess.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_preprocess.py"), "--repeat", "2",
         "--rounds", "1", "--markdown", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for method in ("prepare_input", "full_decode_bicubic", "decode_floor"):
        assert f"| {method} |" in table, table


@pytest.mark.slow
def test_threads_bench_opens_the_bot_on_databases_of_every_size(tmp_path: Path) -> None:
    out = tmp_path / "threads.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_threads.py"), "--threads", "0", "50",
         "--chats", "1", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert row(proc.stdout, "0") and row(proc.stdout, "50")
    assert "## Reproduce" in out.read_text()


@pytest.mark.slow
def test_burst_bench_kills_the_bot_and_loses_nothing(tmp_path: Path) -> None:
    """The quick burst still goes through a real kill -9 and a restart of `chatbrush run`."""
    out = tmp_path / "burst.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_burst.py"), "--quick", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "killed (SIGKILL)" in proc.stderr and "restarting" in proc.stderr
    throughput = table_rows(proc.stdout, "wall time to the last answer")
    assert throughput["after"]["answered"] == "12 / 12"
    killed = table_rows(proc.stdout, "answered at the kill")["after"]
    assert killed["**lost**"] == "**0**"
    assert killed["two model calls"] == "0"
    assert killed["integrity_check"] == "ok"
    assert killed["clean exit"] == "yes"
    answered = int(killed["answered at the kill"]) + int(killed["answered after restart"])
    assert answered + int(killed["told “interrupted”"]) == 12
    markdown = out.read_text()
    assert "## Reproduce" in markdown and "python bench/bench_burst.py --quick" in markdown


def table_rows(text: str, column: str) -> dict[str, dict[str, str]]:
    """The rows of the markdown table that has ``column``, by their first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and column in line)
    header = cells(lines[start])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        found = cells(line)
        rows[found[0]] = dict(zip(header, found, strict=True))
    return rows


def test_credentials_bench_signs_and_reads_back(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_credentials.py"), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    signed = row(proc.stdout, "sign: edit, 1 JPEG input")
    assert float(signed[1]) > 0 and signed[4].startswith("+")
    assert row(proc.stdout, "read_credentials on the edit")
    assert not list(tmp_path.iterdir())  # no results file without --out


@pytest.mark.slow
def test_scaling_bench_runs_every_store_and_process_count(tmp_path: Path) -> None:
    """It starts its own PostgreSQL cluster, so it needs the server binaries."""
    from tests.postgres_server import REQUIRED, server_binaries

    if server_binaries() is None:
        if REQUIRED:
            pytest.fail("PostgreSQL server binaries are missing (CHATBRUSH_REQUIRE_POSTGRES=1)")
        pytest.skip("PostgreSQL server binaries are not installed")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_scaling.py"), "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "could not deliver" not in proc.stderr  # every answer reached its chat
    for store, processes in (("sqlite", "1"), ("postgres", "1"), ("postgres", "4")):
        rows = [cells(line) for line in proc.stdout.splitlines()
                if cells(line)[1:3] == [store, processes]]
        assert len(rows) == 2 and all(float(r[5]) > 0 for r in rows)  # both latencies
