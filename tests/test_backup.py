"""``chatbrush backup`` while the bot runs, ``chatbrush restore`` into a new directory, and
/history and /export there with every picture (issue 19: a backup of the ``.db`` file alone
kept the history and lost every picture).

The bot is the real runtime on a real SQLite file (the demo model, the recording channel of
tests.harness); backup and restore are the real command in a subprocess.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from bot.app.runtime import Runtime
from bot.core.config import Settings
from bot.core.events import ChatKey
from bot.models.demo import DemoModel
from tests.harness import Chat, RecordingPlatform, Sent, photo, running_bot
from tests.processes import run_chatbrush

pytestmark = pytest.mark.timeout(120)

PRIVATE = ChatKey("telegram", "42")
OTHER = ChatKey("telegram", "43")


def settings(folder: Path) -> Settings:
    return Settings(chatbrush_db=str(folder / "chatbrush.db"))


def bot_at(folder: Path, platform: RecordingPlatform) -> AbstractAsyncContextManager[Runtime]:
    return running_bot(settings(folder), platform, model=DemoModel())


def exported_pictures(sent: Sent) -> dict[str, str]:
    """file name -> SHA-256 of every picture in an /export zip, checked against its bytes."""
    assert sent.kind == "file" and sent.file is not None, sent
    with zipfile.ZipFile(io.BytesIO(sent.file[1])) as archive:
        files = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["provenance.json"])
    pictures = {image["file"]: image["sha256"]
                for turn in manifest["turns"] for image in turn["images"]}
    for name, sha in pictures.items():
        assert hashlib.sha256(files[name]).hexdigest() == sha, name
    return pictures


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def test_a_backup_taken_while_the_bot_runs_restores_every_picture(tmp_path: Path) -> None:
    live, copy, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    platform = RecordingPlatform()
    async with bot_at(live, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        v1 = await dm.say("blur it", photo())
        await dm.say("rotate left")
        await dm.say("make it black and white", reply_to=v1.ids[0])  # a branch
        other = Chat(bot, platform, OTHER, private=True)
        await other.say("rotate left", photo((20, 200, 20)))
        history = (await dm.say("/history")).text
        before = exported_pictures(await dm.say("/export"))
        backed_up = run_chatbrush(["backup", str(copy)], "", tmp_path,
                                  {"CHATBRUSH_DB": str(live / "chatbrush.db")})
    assert backed_up.returncode == 0, backed_up.stderr
    assert "Copying the database" in backed_up.stdout and "100%" in backed_up.stdout
    assert f"chatbrush restore {copy}" in backed_up.stdout

    done = run_chatbrush(["restore", str(copy)], "", tmp_path,
                         {"CHATBRUSH_DB": str(restored / "chatbrush.db")})
    assert done.returncode == 0, done.stderr
    assert "Restored" in done.stdout
    assert tree(restored / "chatbrush-c2pa") == tree(live / "chatbrush-c2pa")  # one signer

    platform = RecordingPlatform()
    async with bot_at(restored, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        dm.next_id = 100  # the platform's message numbers go on (1… are in the inbox)
        assert (await dm.say("/history")).text == history
        after = exported_pictures(await dm.say("/export"))
        assert after == before and len(after) >= 4  # the photo and three versions
        other = Chat(bot, platform, OTHER, private=True)
        other.next_id = 100
        assert len(exported_pictures(await other.say("/export"))) >= 2


async def test_restore_refuses_a_live_database_and_an_existing_one(tmp_path: Path) -> None:
    live, copy = tmp_path / "live", tmp_path / "backup"
    platform = RecordingPlatform()
    async with bot_at(live, platform) as bot:
        await Chat(bot, platform, PRIVATE, private=True).say("blur it", photo())
        env = {"CHATBRUSH_DB": str(live / "chatbrush.db")}
        assert run_chatbrush(["backup", str(copy)], "", tmp_path, env).returncode == 0
        again = run_chatbrush(["backup", str(copy)], "", tmp_path, env)
        assert again.returncode == 2 and "exists already" in again.stderr
        refused = run_chatbrush(["restore", str(copy), "--replace"], "", tmp_path, env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"chatbrush: a chatbrush process is using {live / 'chatbrush.db'}; stop it before "
        "restoring over it"]
    kept = run_chatbrush(["restore", str(copy)], "", tmp_path, env)
    assert kept.returncode == 2 and "pass --replace" in kept.stderr
    replaced = run_chatbrush(["restore", str(copy), "--replace"], "", tmp_path, env)
    assert replaced.returncode == 0, replaced.stderr
