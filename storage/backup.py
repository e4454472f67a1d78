"""``chatbrush backup`` / ``restore`` for each backend (the ``chatbrush.backups`` entry
points; :mod:`bot.app.backup` adds the signing key and the progress lines).

SQLite: the database through SQLite's online backup API (a consistent snapshot while the
bot writes; the bot's lock file is not taken, so it keeps running), then the pictures it
names from ``<db>-images/``. Pictures are content-addressed and written before any row
names them, so copying them after the snapshot finds every one the snapshot names, unless a
purge erased it in between: those are counted and reported, never silently lost.

PostgreSQL: the pictures are rows of the database, so ``pg_dump`` is the backup; we say
how rather than wrap it (the server's own tool matches its version and options).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from bot.core.config import SettingsError
from storage.blobs import BlobFiles

Say = Callable[[str], None]
DATABASE_NAME = "chatbrush.db"
#: pages copied per step of the online backup (4 MB at SQLite's default page size): the
#: bot's writers wait at most one step
PAGES_PER_STEP = 1024


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).expanduser()


def pictures_folder(database: Path) -> Path:
    return Path(f"{database}-images")  # as storage.sqlite keeps them


class SqliteBackup:
    """Copies of a SQLite deployment: ``DEST/chatbrush.db`` and ``DEST/chatbrush.db-images``."""

    def backup(self, url: str, dest: Path, say: Say) -> None:
        source = sqlite_path(url)
        if not source.exists():
            raise SettingsError(f"there is no database at {source} to back up")
        target = dest / DATABASE_NAME
        if target.exists():
            raise SettingsError(f"{target} exists already; back up into a new folder")
        dest.mkdir(parents=True, exist_ok=True)
        say(f"Copying the database {source} to {target} (online: the bot keeps running)…")
        _copy_database(source, target, say)
        copied, missing = _copy_pictures(target, pictures_folder(source),
                                         pictures_folder(target), say)
        say(f"Copied {copied} picture file(s) to {pictures_folder(target)}.")
        if missing:
            say(f"Warning: {missing} picture(s) were removed (retention or /forget) while "
                "the backup ran; their conversations keep their text.")

    def restore(self, url: str, source: Path, say: Say, *, replace: bool) -> None:
        backup = source / DATABASE_NAME
        if not backup.exists():
            raise SettingsError(f"{source} holds no {DATABASE_NAME}: not a chatbrush backup")
        target = sqlite_path(url)
        with _locked(target):
            if target.exists() and not replace:
                raise SettingsError(f"{target} exists; pass --replace to overwrite it with "
                                    "the backup")
            target.parent.mkdir(parents=True, exist_ok=True)
            for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
                leftover.unlink(missing_ok=True)
            say(f"Restoring the database {backup} to {target}…")
            _copy_database(backup, target, say)
            folder = pictures_folder(target)
            if folder.exists():
                say(f"Removing the pictures of the database being replaced ({folder})…")
                shutil.rmtree(folder)
            copied, missing = _copy_pictures(target, pictures_folder(backup), folder, say)
            say(f"Restored {copied} picture file(s) to {folder}.")
            if missing:
                say(f"Warning: the backup lacks {missing} picture(s) its database names.")


class PostgresBackup:
    """The database is the server's to dump: say how, and let the key be copied."""

    def backup(self, url: str, dest: Path, say: Say) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        say("The database is PostgreSQL: every picture is in it, so back it up with the "
            "server's pg_dump (same major version as the server), e.g.\n"
            f'  pg_dump --format=custom --dbname="$DATABASE_URL" --file={dest}/chatbrush.dump')

    def restore(self, url: str, source: Path, say: Say, *, replace: bool) -> None:
        say("The database is PostgreSQL: restore its dump with pg_restore while no chatbrush "
            "process runs, into an empty database owned by the bot's role, e.g.\n"
            f'  pg_restore --no-owner --dbname="$DATABASE_URL" {source}/chatbrush.dump')


SQLITE = SqliteBackup()
POSTGRES = PostgresBackup()


def _copy_database(source: Path, target: Path, say: Say) -> None:
    def progress(status: int, remaining: int, total: int) -> None:
        if total:
            say(f"  {100 * (total - remaining) // total}% of {total} pages")

    with contextlib.closing(sqlite3.connect(source)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst, pages=PAGES_PER_STEP, progress=progress)
        (verdict,) = dst.execute("PRAGMA quick_check").fetchone()
    if verdict != "ok":
        raise SettingsError(f"the copy of {source} fails its integrity check: {verdict}")


def _stored_pictures(database: Path) -> Iterator[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT sha256 FROM images WHERE location = 'file'").fetchall()
    return (sha for (sha,) in rows)


def _copy_pictures(database: Path, source: Path, target: Path, say: Say) -> tuple[int, int]:
    """Copy every picture file ``database`` names: (copied, missing)."""
    shas = list(_stored_pictures(database))
    say(f"Copying {len(shas)} picture file(s) from {source}…")
    have, want = BlobFiles(source), BlobFiles(target)
    copied = missing = 0
    for n, sha in enumerate(shas, start=1):
        destination = want.path(sha)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(have.path(sha), destination)
            copied += 1
        except FileNotFoundError:
            missing += 1
        if n % 500 == 0:
            say(f"  {n} of {len(shas)}")
    return copied, missing


@contextlib.contextmanager
def _locked(database: Path) -> Iterator[None]:
    """Hold the lock a running bot holds on ``database`` (storage.sqlite's lock file), so
    a restore never writes under a live bot, and no bot starts during one."""
    lock = Path(f"{database}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SettingsError(f"a chatbrush process is using {database}; stop it before "
                                "restoring over it") from None
        yield
