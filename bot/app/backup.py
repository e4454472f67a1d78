"""``chatbrush backup DEST`` and ``chatbrush restore SRC``: everything the bot keeps, copied
while it runs, and put back where the settings say.

The backend's part (the database, and on SQLite the picture folder beside it) comes from
the ``chatbrush.backups`` entry points, as stores do (the core imports no storage module).
The signing key folder (``chatbrush-c2pa/``) is ours: without it, pictures signed after a
restore name another signer than those signed before.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from bot.app.runtime import store_url
from bot.core.config import Settings, SettingsError
from bot.provenance.outgoing import credentials_directory

BACKUP_ENTRY_POINTS = "chatbrush.backups"
#: the key folder's name inside a backup
KEY_FOLDER = "chatbrush-c2pa"

Say = Callable[[str], None]


class BackupBackend(Protocol):
    def backup(self, url: str, dest: Path, say: Say) -> None: ...

    def restore(self, url: str, source: Path, say: Say, *, replace: bool) -> None: ...


def backend_for(url: str) -> BackupBackend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else "sqlite"
    name = "postgres" if scheme in ("postgres", "postgresql") else scheme
    found = {ep.name: ep for ep in entry_points(group=BACKUP_ENTRY_POINTS)}
    if name not in found:
        raise SettingsError(f"no backup for {scheme}:// databases is installed")
    backend: BackupBackend = found[name].load()
    return backend


def backup(settings: Settings, dest: Path, *, say: Say = print) -> None:
    """Copy the database, its pictures and the signing key into the folder ``dest``."""
    url = store_url(settings)
    backend_for(url).backup(url, dest, say)
    _copy_key(settings, credentials_directory(settings, url), dest / KEY_FOLDER, say,
              replace=False)
    say(f"Done: the backup is in {dest}. Restore it with: chatbrush restore {dest}")


def restore(settings: Settings, source: Path, *, replace: bool = False,
            say: Say = print) -> None:
    """Put a backup made by :func:`backup` where the settings keep the bot's files."""
    if not source.is_dir():
        raise SettingsError(f"{source} is not a folder made by chatbrush backup")
    url = store_url(settings)
    backend_for(url).restore(url, source, say, replace=replace)
    _copy_key(settings, source / KEY_FOLDER, credentials_directory(settings, url), say,
              replace=replace)
    say("Done: start chatbrush as usual.")


def _copy_key(settings: Settings, source: Path, target: Path, say: Say, *,
              replace: bool) -> None:
    if settings.chatbrush_c2pa_cert is not None or settings.chatbrush_c2pa_key is not None:
        say("The signing certificate and key are your own (CHATBRUSH_C2PA_CERT, "
            "CHATBRUSH_C2PA_KEY): keep copies of those files yourself.")
        return
    if not source.is_dir():
        say(f"No signing key folder at {source}: nothing to copy (one is made at start-up).")
        return
    if target.exists():
        if not replace:
            say(f"Kept the signing key already at {target} (--replace puts the backup's "
                "there).")
            return
        shutil.rmtree(target)
    say(f"Copying the signing key folder {source} to {target}…")
    shutil.copytree(source, target)
