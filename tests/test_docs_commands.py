"""The command blocks of the README and docs/ that can run offline are run, as written.

A reader copies them into a shell; a renamed flag or a changed command would otherwise go
unnoticed until someone tries. What needs a real service (a key, a token, Docker) is left
out: a line runs here when it is the console with the offline demo model (``run`` and
``web`` with ``--demo`` still need a chat platform; tests/test_cli_demo.py runs those
against the fakes).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def offline_lines() -> list[tuple[str, str]]:
    """(document, line) for each shell line that runs with the demo model alone."""
    found = []
    for document in DOCUMENTS:
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", document.read_text(), flags=re.S):
            for line in block.splitlines():
                command = line.split("  #", 1)[0].strip()
                if "chatbrush console --demo" in command and "..." not in command:
                    found.append((document.name, command))
    return found


def test_the_documents_have_offline_commands_to_run() -> None:
    assert len(offline_lines()) >= 2  # the console with and without a piped script


@pytest.mark.parametrize(("document", "command"), offline_lines())
def test_an_offline_command_runs_as_written(document: str, command: str,
                                            tmp_path: Path) -> None:
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(photo, "JPEG")
    (tmp_path / "photo.jpg").write_bytes(photo.getvalue())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CHATBRUSH_DB": str(tmp_path / "chatbrush.db")}
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=90, check=False)
    assert result.returncode == 0, f"{document}: {command}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr
    if "@photo.jpg" in command:
        assert "v1" in result.stdout  # the demo answered the photo
