"""The console adapter and the ``chatbrush`` command, run as a user would run them."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from adapters.console.terminal import ConsoleInputError, parse_line
from tests.fakes.gemini import FakeGemini
from tests.harness import manifest_of, software_agents
from tests.processes import clean_environment, run_chatbrush

SCRIPT = "@photo.jpg make it black and white\nnow blur it\n/undo\n/history\n"


def write_photo(path: Path) -> None:
    image = Image.new("RGB", (400, 300), (220, 120, 40))
    for x in range(0, 400, 20):  # some detail, so blurring changes pixels
        for y in range(300):
            image.putpixel((x, y), (10, 10, 10))
    image.save(path)


def chatbrush(args: list[str], stdin: str, cwd: Path, **env: str
              ) -> subprocess.CompletedProcess[str]:
    return run_chatbrush(args, stdin, cwd, env)


def saved_paths(stdout: str, cwd: Path) -> list[Path]:
    return [cwd / line for line in stdout.splitlines() if line.startswith("chatbrush-out/")]


def test_demo_console_edits_undoes_and_lists_history(tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")
    result = chatbrush(["console", "--demo"], SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    images = saved_paths(result.stdout, tmp_path)
    assert len(images) >= 2 and all(p.exists() for p in images)
    red, green, blue = Image.open(images[0]).convert("RGB").split()
    assert red.tobytes() == green.tobytes() == blue.tobytes()
    assert len({p.read_bytes() for p in images[:2]}) == 2  # the blur really changed it
    assert "Back to v1" in result.stdout
    assert "v2 (from v1): now blur it" in result.stdout
    assert "Traceback" not in result.stderr


def test_each_on_several_paths_prints_one_line_per_result_in_their_order(
        tmp_path: Path) -> None:
    for name, colour in (("dark.png", (40, 40, 160)), ("light.png", (250, 230, 120))):
        Image.new("RGB", (120, 90), colour).save(tmp_path / name)
    result = chatbrush(["console", "--demo"],
                       "/each make it black and white @dark.png @light.png\n", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    caption = next(i for i, line in enumerate(lines) if "Each picture edited" in line)
    first, second = (tmp_path / line for line in lines[caption + 1:caption + 3])
    assert "v1" in lines[caption] and "v2" in lines[caption]
    darker, lighter = (Image.open(p).convert("L").getpixel((60, 45)) for p in (first, second))
    assert isinstance(darker, int) and isinstance(lighter, int) and darker < lighter


def test_console_continues_its_thread_across_runs(tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")
    chatbrush(["console", "--demo"], "@photo.jpg make it black and white\n", tmp_path)
    second = chatbrush(["console", "--demo"], "mirror it\n/history\n", tmp_path)
    assert "v2 (from v1): mirror it" in second.stdout


def test_against_a_gemini_compatible_server_signatures_go_back(tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")
    with FakeGemini.in_thread(models=None) as fake:
        result = chatbrush(["console"], SCRIPT, tmp_path, GEMINI_API_KEY="test-gemini-key",
                           GEMINI_BASE_URL=fake.base_url,
                           GEMINI_MODEL="gemini-3-pro-image-preview")
        assert result.returncode == 0, result.stderr
        assert len(saved_paths(result.stdout, tmp_path)) >= 2
        first_answer = fake.answers[0]["candidates"][0]["content"]["parts"]
        signatures = [p["thoughtSignature"] for p in first_answer if "thoughtSignature" in p]
        replayed = fake.requests[1].parts("model")
        assert signatures and all(
            any(p.get("thoughtSignature") == s for p in replayed) for s in signatures
        )
        assert all(r.status == 200 for r in fake.requests)


def test_without_a_key_it_explains_in_one_line(tmp_path: Path) -> None:
    result = chatbrush(["console"], "hello\n", tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "GEMINI_API_KEY" in result.stderr and "--demo" in result.stderr


def test_a_malformed_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = chatbrush(["console", "--demo"], "", tmp_path, CHATBRUSH_MAX_SIDE="huge")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("chatbrush: invalid setting CHATBRUSH_MAX_SIDE")
    assert "Traceback" not in result.stderr


def test_a_malformed_platform_setting_stops_every_command_in_one_line(tmp_path: Path) -> None:
    """A platform's settings are its adapter's group, yet checked at start like the rest."""
    result = chatbrush(["console", "--demo"], "", tmp_path,
                       TELEGRAM_WEBHOOK_URL="http://bot.example.com/hook")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("chatbrush: invalid setting TELEGRAM_WEBHOOK_URL")
    assert "Traceback" not in result.stderr


def test_no_arguments_and_no_credentials_opens_the_demo_console(tmp_path: Path) -> None:
    result = chatbrush([], "/help\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stderr.lower()
    assert "No chat platform is configured (set " in result.stderr
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "SLACK_BOT_TOKEN" in result.stderr
    assert "/undo" in result.stdout
    assert "@path/to/photo.jpg" in result.stdout  # the console's own /help tips


def test_missing_attachment_is_reported_and_nothing_is_sent(tmp_path: Path) -> None:
    with pytest.raises(ConsoleInputError, match=r"cannot read nope\.jpg"):
        parse_line("@nope.jpg make it blue", max_bytes=10, base=tmp_path)
    result = chatbrush(["console", "--demo"], "@nope.jpg make it blue\n/history\n", tmp_path)
    assert "cannot read nope.jpg" in result.stdout
    assert "no conversation yet" in result.stdout.lower() or "No versions" in result.stdout


def test_attachment_tokens_and_quoted_paths(tmp_path: Path) -> None:
    write_photo(tmp_path / "a b.jpg")
    write_photo(tmp_path / "c.jpg")
    text, images = parse_line('fuse @"a b.jpg" these @c.jpg please', max_bytes=10**7,
                              base=tmp_path)
    assert text == "fuse these please"
    assert [i.filename for i in images] == ["a b.jpg", "c.jpg"]
    assert parse_line("mail me at a@b.com", max_bytes=10, base=tmp_path) == (
        "mail me at a@b.com", [])


def test_oversized_attachment_is_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"\0" * 2000)
    with pytest.raises(ConsoleInputError, match="limit"):
        parse_line("@big.jpg hi", max_bytes=1000, base=tmp_path)


def test_channel_saves_each_image_and_prints_its_path(tmp_path: Path) -> None:
    import asyncio

    from adapters.console.terminal import ConsoleChannel
    from bot.kit.image_types import OutputImage

    out = io.StringIO()
    channel = ConsoleChannel(tmp_path / "out", out, io.StringIO())
    ids = asyncio.run(channel.send_images([OutputImage(b"png-1"), OutputImage(b"png-2")],
                                          "v1 — here"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "bot: v1 — here"
    assert [Path(p).read_bytes() for p in lines[1:]] == [b"png-1", b"png-2"]
    assert len(set(ids)) == 2


def test_export_saves_the_zip_under_out_and_prints_its_path(tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")
    result = chatbrush(["console", "--demo"], "@photo.jpg make it black and white\n/export\n",
                       tmp_path)
    assert result.returncode == 0, result.stderr
    saved = saved_paths(result.stdout, tmp_path)
    [archive] = [p for p in saved if p.suffix == ".zip"]
    assert archive.name.startswith("chatbrush-thread-")
    # the picture saved to disk keeps its Content Credentials
    [picture] = [p for p in saved if p.suffix == ".png"]
    assert software_agents(manifest_of(picture.read_bytes())) == ["demo"]
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert any(n.endswith("/index.html") for n in names)
    assert any(n.endswith("/provenance.json") for n in names)
    assert "open index.html" in result.stdout


def test_folders_and_devices_are_refused_not_read(tmp_path: Path) -> None:
    (tmp_path / "holiday").mkdir()
    with pytest.raises(ConsoleInputError, match="is a folder"):
        parse_line("@holiday make it red", max_bytes=10_000)
    with pytest.raises(ConsoleInputError, match="not a regular file"):
        parse_line("@/dev/zero make it red", max_bytes=10_000)  # would never end if read
    result = chatbrush(["console", "--demo"], "@holiday make it red\n@/dev/zero blur\n",
                       tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "holiday is a folder" in result.stdout
    assert "/dev/zero is not a regular file" in result.stdout


def test_bytes_that_are_not_utf8_and_comments_do_not_end_the_console(tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")
    script = b"# a comment\n@photo.jpg make it black and white \xff\xfe\nmirror it\n/history\n"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"], input=script, capture_output=True,
        cwd=tmp_path, env=clean_environment(), timeout=120, check=False,
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in err
    assert "comment" in err and "not sent" in err  # said, not silently dropped
    assert "v1: make it black and white \ufffd\ufffd" in out
    assert "v2 (from v1): mirror it" in out


def test_a_line_left_unanswered_by_a_killed_console_is_answered_next_time(
    tmp_path: Path
) -> None:
    from bot.core.config import load_settings
    from storage.sqlite import SqliteDatabase

    write_photo(tmp_path / "photo.jpg")
    first = chatbrush(["console", "--demo"], "@photo.jpg make it black and white\n", tmp_path)
    assert first.returncode == 0
    # as if the console was killed right after storing a line, before answering it
    database = SqliteDatabase(tmp_path / load_settings().chatbrush_db)
    from adapters.console.terminal import CONSOLE_CHAT
    from bot.core.events import Incoming, Sender

    database.inbox_add(Incoming(chat=CONSOLE_CHAT, message_id="killed-1",
                                sender=Sender("me"), text="mirror it", is_private=True),
                       lane=str(CONSOLE_CHAT))
    database.close()
    second = chatbrush(["console", "--demo"], "/history\n", tmp_path)
    assert "v2 (from v1): mirror it" in second.stdout
