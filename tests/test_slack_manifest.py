"""The app manifest people paste must ask for what the adapter actually uses."""

from __future__ import annotations

from pathlib import Path

from adapters.slack.adapter import SLASH_COMMAND

MANIFEST = Path(__file__).resolve().parents[1] / "docs" / "slack-manifest.yaml"


def _items(text: str, section: str) -> set[str]:
    """The ``- item`` lines directly under ``section:`` (no YAML parser needed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{section}:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    items = set()
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped.startswith("- ") or len(line) - len(line.lstrip()) < indent:
            break
        items.add(stripped[2:])
    return items


def test_manifest_scopes_events_and_command_match_the_adapter() -> None:
    text = MANIFEST.read_text()
    assert f"- command: {SLASH_COMMAND}" in text
    assert _items(text, "bot") == {
        "app_mentions:read",  # app_mention events
        "channels:history",  # thread replies in public channels, conversations.replies
        "groups:history",  # … in private channels
        "im:history",  # direct messages
        "mpim:history",  # group DMs
        "chat:write",  # replies
        "commands",  # /chatbrush
        "files:read",  # downloading attached pictures
        "files:write",  # files_upload_v2
        "reactions:write",  # progress
        "users:read",  # users.info for admin checks
    }
    assert _items(text, "bot_events") == {
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
    }
    assert "socket_mode_enabled: true" in text
