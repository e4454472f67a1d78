"""Image bytes as content-addressed files beside the SQLite database.

A 1.3 MB picture per turn, written into the database, pushes SQLite's WAL past its
checkpoint threshold every few turns, and that checkpoint stalls whichever commit hits it
(40–70 ms; ``bench/bench_storage.py``). Kept as files named by their SHA-256, the bytes
never touch the WAL: the row keeps the hash and the metadata. A file is written whole
before any row names it (temporary file, fsync, rename, fsync of the folder), so a crash
leaves at worst an orphan file, which :meth:`BlobFiles.sweep` removes later — never a row
without its bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_ZEROS_CHUNK = 1 << 20


class BlobFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        with contextlib.suppress(OSError):
            if target.stat().st_size == len(data):
                return sha  # already stored whole: content addressing makes it the same
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{sha}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_folder(target.parent)
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def erase(self, shas: Iterable[str]) -> int:
        """Remove pictures for good: each file is overwritten with zeros and flushed before
        it is unlinked, so the bytes are not left behind in the blocks it freed (best
        effort: a copy-on-write filesystem or an SSD may still keep old blocks)."""
        erased = 0
        for sha in shas:
            path = self.path(sha)
            try:
                with path.open("r+b") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    for _ in range(0, size, _ZEROS_CHUNK):
                        handle.write(bytes(min(_ZEROS_CHUNK, size - handle.tell())))
                    handle.flush()
                    os.fsync(handle.fileno())
                path.unlink()
            except FileNotFoundError:
                continue
            erased += 1
        return erased

    def sweep(self, is_referenced: Callable[[str], bool], *, older_than: float) -> int:
        """Remove files no row names (a crash between writing one and committing its row)
        and leftover temporary files, if they are older than ``older_than`` (epoch s)."""
        removed = 0
        if not self.folder.is_dir():
            return 0
        for path in self.folder.glob("*/*"):
            try:
                if path.stat().st_mtime >= older_than:
                    continue
            except FileNotFoundError:
                continue
            if path.suffix == ".tmp" or not is_referenced(path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
