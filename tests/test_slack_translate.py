"""Which Slack events the bot answers, and how it reads them (recorded payload shapes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.files import FileRefused, check_declared, token_allowed
from adapters.slack.translate import clean_text, translate_event

FIXTURES = Path(__file__).parent / "fixtures"
BOT = "UBOT"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_recorded_file_share_without_mention_is_not_for_the_bot() -> None:
    body = recorded("slack_message_file_share_event.json")
    bot = body["authorizations"][0]["user_id"]
    assert translate_event(body["event"], bot) is None


def test_recorded_file_share_that_mentions_the_bot_is_a_mention_with_its_file() -> None:
    body = recorded("slack_message_file_share_event.json")
    bot = body["authorizations"][0]["user_id"]
    event = dict(body["event"], text=f"<@{bot}> make it blue")
    msg = translate_event(event, bot)
    assert msg is not None
    assert msg.kind == "mention"
    assert msg.text == "make it blue"
    assert [f["url_private_download"] for f in msg.files] == [
        "https://files.slack.com/files-pri/T111-F111/download/file.png"
    ]
    # a top-level mention starts a conversation keyed by its own ts, answered in-thread
    assert msg.thread_hint == msg.reply_thread == "1652227646.593159"
    assert not msg.is_private


def test_recorded_thread_reply_continues_by_thread_ts() -> None:
    body = recorded("slack_message_in_thread_event.json")
    msg = translate_event(body["event"], body["authorizations"][0]["user_id"])
    assert msg is not None
    assert msg.kind == "thread"
    assert msg.thread_hint == msg.reply_thread == "1726133698.626339"
    assert msg.text == "When Slack was released?"


def test_app_mention_inside_a_thread_joins_that_thread() -> None:
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": "<@UBOT> undo 2",
        "ts": "2.0",
        "thread_ts": "1.0",
        "channel": "C1",
    }
    msg = translate_event(event, BOT)
    assert msg is not None
    assert (msg.kind, msg.thread_hint, msg.reply_thread) == ("mention", "1.0", "1.0")
    assert msg.text == "/undo 2"


@pytest.mark.parametrize(
    ("thread_ts", "hint", "reply"), [(None, None, None), ("5.0", "5.0", "5.0")]
)
def test_direct_messages_are_private_and_top_level_unless_threaded(
    thread_ts: str | None, hint: str | None, reply: str | None
) -> None:
    event = {
        "type": "message",
        "channel_type": "im",
        "user": "U1",
        "text": "make it pop",
        "ts": "6.0",
        "channel": "D1",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    msg = translate_event(event, BOT)
    assert msg is not None
    assert msg.is_private and msg.kind == "dm"
    assert (msg.thread_hint, msg.reply_thread) == (hint, reply)


@pytest.mark.parametrize(
    "change",
    [
        {"user": BOT},  # the bot's own message
        {"bot_id": "B999", "subtype": "bot_message"},  # another bot
        {"subtype": "message_changed"},  # an edit
        {"subtype": "message_deleted"},
        {"subtype": "channel_join", "text": "<@U1> has joined the channel"},
        {"hidden": True},
    ],
)
def test_non_user_content_is_ignored(change: dict[str, Any]) -> None:
    event = {
        "type": "message",
        "channel_type": "im",
        "user": "U1",
        "text": "<@UBOT> hello",
        "ts": "7.0",
        "channel": "D1",
        **change,
    }
    assert translate_event(event, BOT) is None


def test_top_level_channel_chatter_is_ignored() -> None:
    event = {
        "type": "message",
        "channel_type": "channel",
        "user": "U1",
        "text": "lunch?",
        "ts": "8.0",
        "channel": "C1",
    }
    assert translate_event(event, BOT) is None


def test_thread_broadcast_counts_as_user_content() -> None:
    event = {
        "type": "message",
        "subtype": "thread_broadcast",
        "channel_type": "channel",
        "user": "U1",
        "text": "now add a hat",
        "ts": "9.0",
        "thread_ts": "1.0",
        "channel": "C1",
    }
    msg = translate_event(event, BOT)
    assert msg is not None and msg.kind == "thread"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<@UBOT> make the sky &lt;purple&gt; &amp; pink", "make the sky <purple> & pink"),
        ("<@UBOT|chatbrush>   reset", "/reset"),
        ("<@UBOT> reset the colours to the original", "reset the colours to the original"),
        ("like <https://example.com/a.png|this one> please", "like this one please"),
        ("see <https://example.com/x>", "see https://example.com/x"),
        ("<@UBOT> history", "/history"),
        ("<@UBOT> each make the background white", "/each make the background white"),
        ("<@UBOT> Each consistent film look", "/each consistent film look"),
        ("<@UBOT> forget confirm", "/forget confirm"),
        ("<@UBOT> forget everything about the background", "forget everything about the "
         "background"),
        ("<@UBOT> undo confirm", "undo confirm"),
        ("ask <@U222> about it", "ask <@U222> about it"),
        ("<@UBOT> settings aspect 16:9", "/settings aspect 16:9"),
        ("<@UBOT> settings", "/settings"),
        ("<@UBOT> settings of a castle at night", "settings of a castle at night"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw, BOT) == clean


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.png", True),
        ("https://files.slack-gov.com/files-pri/T1-F1/download/a.png", True),
        ("http://files.slack.com/files-pri/T1-F1/download/a.png", False),  # plain HTTP
        ("https://files.slack.com.evil.example/x.png", False),
        ("https://evil.example/files.slack.com/x.png", False),
        ("https://slack.com/api/files.info", True),  # the API origin itself
        ("http://127.0.0.1:9/api/x", False),
    ],
)
def test_token_goes_only_to_slack_hosts(url: str, allowed: bool) -> None:
    assert token_allowed(url, "https://slack.com/api/") is allowed


def test_token_allowed_for_a_configured_api_origin_with_port() -> None:
    api = "http://127.0.0.1:4567/api/"
    assert token_allowed("http://127.0.0.1:4567/files-pri/T-F/download/a.png", api)
    assert not token_allowed("http://127.0.0.1:4568/files-pri/T-F/download/a.png", api)
    assert not token_allowed("https://127.0.0.1:4567/files-pri/T-F/download/a.png", api)



@pytest.mark.parametrize(
    ("file", "message"),
    [
        ({"name": "q3.pdf", "mimetype": "application/pdf", "pretty_type": "PDF"}, "PDF"),
        ({"name": "logo.svg", "mimetype": "image/svg+xml", "filetype": "svg"}, "only edit"),
        ({"name": "big.png", "mimetype": "image/png", "size": 30_000_000}, "too large"),
        ({"name": "gone.png", "mode": "tombstone"}, "deleted"),
    ],
)
def test_files_refused_from_metadata(file: dict[str, Any], message: str) -> None:
    with pytest.raises(FileRefused, match=message) as info:
        check_declared(file, 20_000_000)
    assert file["name"] in str(info.value)
