"""The README documents every command, docs/configuration.md every setting (as sqlite-utils
checks its CLI), and the README's map every module."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bot.app.cli import build_parser
from bot.core.config import Settings
from bot.core.platforms import registered
from bot.flow.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("name", subcommands())
def test_every_cli_command_is_documented(name: str) -> None:
    assert f"`chatbrush {name}" in README


def every_setting() -> list[str]:
    """The core's settings and every registered platform's group."""
    groups = [Settings, *(info.settings for info in registered().values())]
    return sorted({name for group in groups for name in group.model_fields})


def test_the_platform_settings_are_among_them() -> None:
    assert {"telegram_bot_token", "slack_bot_token"} <= set(every_setting())


@pytest.mark.parametrize("name", every_setting())
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name.upper()}`" in CONFIGURATION


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_chat_command_is_documented(command: str) -> None:
    assert f"`/{command}" in README


def test_the_first_lines_are_the_two_commands() -> None:
    block = README.split("```")[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("chatbrush") and "pytest" in lines[1]


def mapped_modules() -> set[str]:
    """The module paths the README's "How it works" map lists (folder lines give the
    prefix of the indented lines under them)."""
    section = README.split("## How it works", 1)[1].split("```", 2)[1]
    found, folder = set(), ""
    for line in section.splitlines():
        words = line.split()
        if not words:
            continue
        if not line.startswith(" "):
            folder = words[0]
        elif words[0].endswith(".py"):
            found.add(folder + words[0])
    return found


def test_every_module_is_on_the_map() -> None:
    """A newcomer reads the map first: every module is on it, and nothing that is gone."""
    root = Path(__file__).resolve().parents[1]
    modules = {str(p.relative_to(root)) for folder in ("adapters", "bot", "storage")
               for p in (root / folder).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")
               or p.parent.name in ("commands", "i18n")}
    assert sorted(modules - mapped_modules()) == []
    assert sorted(mapped_modules() - modules) == []


def test_the_contents_list_every_section() -> None:
    """The README is long: its contents name every section, in order, and link to it."""
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- \[(.+?)\]\(#([\w-]+)\)$", contents, flags=re.M)
    sections = [h for h in re.findall(r"^## (.+)$", README, flags=re.M) if h != "Contents"]
    assert [title for title, _ in listed] == sections
    for title, anchor in listed:
        assert anchor == re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_every_metric_family_is_documented_with_its_labels() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import bot.kit.metrics

    operations = (ROOT / "docs" / "operations.md").read_text()
    for metric in vars(bot.kit.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            labels = "{" + ",".join(metric._labelnames) + "}" if metric._labelnames else ""
            assert f"`{name}{labels}`" in operations
