"""The Telegram translation rules, on recorded updates parsed by the real PTB classes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from telegram import Message, Update

from adapters.telegram.translate import (
    BotIdentity,
    attachments_of,
    command_target,
    fits_photo,
    is_addressed,
    prompt_text,
    reply_target,
    sender_of,
    speaks_for_chat,
    split_text,
    to_incoming,
    topic_id,
)
from bot.core.events import AttachmentKind
from tests.fakes.telegram_api import GROUP_ANONYMOUS_BOT, auto_entities

FIXTURES = Path(__file__).parent / "fixtures"
ME = BotIdentity(123456789, "ChatbrushTestBot")
LIMIT = 20_000_000


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def message_of(update: dict[str, Any]) -> Message:
    parsed = Update.de_json(update, None)
    assert parsed.message is not None
    return parsed.message


def with_text(update: dict[str, Any], text: str, *, caption: bool = False) -> Message:
    data = copy.deepcopy(update)
    msg = data["message"]
    msg.pop("text", None)
    msg.pop("entities", None)
    if caption:
        msg["caption"] = text
        msg["caption_entities"] = auto_entities(text)
    else:
        msg["text"] = text
        msg["entities"] = auto_entities(text)
    return message_of(data)


def test_forum_topic_is_a_scope_and_its_creation_notice_is_not_a_reply() -> None:
    update = load("telegram_forum_topic_reply_update.json")
    message = message_of(update)
    assert topic_id(message) == "407"
    assert reply_target(message) is None
    # the topic was opened by a bot: even if that bot is us, "Согласен" is not for us
    creator = BotIdentity(5933409757, "NuiChatBot")
    assert not is_addressed(message, creator)


def test_reply_chain_thread_id_in_a_plain_supergroup_is_not_a_topic() -> None:
    update = load("telegram_supergroup_reply_chain_thread_id_update.json")
    message = message_of(update)
    assert message.message_thread_id == 134545
    assert topic_id(message) is None
    replied = reply_target(message)
    assert replied is not None and replied.message_id == 134545
    assert command_target(message) == (True, None)
    assert is_addressed(message, ME)  # a bare /command in a group is for every bot


def test_commands_for_another_bot_are_not_ours() -> None:
    update = load("telegram_supergroup_reply_chain_thread_id_update.json")
    assert not is_addressed(with_text(update, "/report@SomeOtherBot"), ME)
    assert is_addressed(with_text(update, "/reset@chatbrushtestbot"), ME)


def test_largest_photo_size_is_taken() -> None:
    message = message_of(load("telegram_photo_supergroup_update.json"))
    [ref] = attachments_of(message)
    assert ref.kind is AttachmentKind.IMAGE
    assert ref.ref.endswith("AAN5AAM7BA")  # the 1280x960 entry
    assert ref.size == 63485
    assert not is_addressed(message, ME)  # a bare photo in a group is chatter


def test_album_document_image_and_its_caption() -> None:
    first = message_of(load("telegram_document_image_album_part1_update.json"))
    second = message_of(load("telegram_document_image_album_part2_caption_update.json"))
    one, two = to_incoming(first, ME), to_incoming(second, ME)
    assert one is not None and two is not None
    assert one.group_id == two.group_id is not None
    [ref] = one.attachments
    assert ref.kind is AttachmentKind.IMAGE and ref.mime_type == "image/png"
    assert ref.filename is not None and ref.filename.endswith(".png")
    assert one.text == "" and two.text == "rrrrrrrrrrrr"


@pytest.mark.parametrize(
    ("mime", "name", "kind"),
    [
        ("application/pdf", "brief.pdf", AttachmentKind.FILE),
        ("image/gif", "party.gif", AttachmentKind.VIDEO),
        ("application/zip", "photos.zip", AttachmentKind.FILE),
        ("video/mp4", "clip.mp4", AttachmentKind.VIDEO),
    ],
)
def test_non_image_documents_are_marked_for_refusal(mime: str, name: str,
                                                    kind: AttachmentKind) -> None:
    data = load("telegram_document_image_album_part1_update.json")
    data["message"]["document"].update(mime_type=mime, file_name=name)
    [ref] = attachments_of(message_of(data))
    assert ref.kind is kind and ref.filename == name


def test_images_recognised_by_extension_when_the_type_is_generic() -> None:
    data = load("telegram_document_image_album_part1_update.json")
    data["message"]["document"].update(mime_type="application/octet-stream", file_name="x.HEIC")
    [ref] = attachments_of(message_of(data))
    assert ref.kind is AttachmentKind.IMAGE


def test_a_document_with_no_type_and_no_name_is_judged_by_its_bytes() -> None:
    data = load("telegram_document_image_album_part1_update.json")
    for key in ("mime_type", "file_name"):
        data["message"]["document"].pop(key, None)
    [ref] = attachments_of(message_of(data))
    assert ref.kind is AttachmentKind.IMAGE  # downloaded and sniffed, not "(this kind of)"


def test_sizes_travel_with_the_reference() -> None:
    data = load("telegram_document_image_album_part1_update.json")
    data["message"]["document"]["file_size"] = 25_000_000
    [ref] = attachments_of(message_of(data))
    assert ref.size == 25_000_000  # the core refuses it before any download


def test_a_video_without_caption_still_reaches_the_core() -> None:
    data = load("telegram_supergroup_reply_chain_thread_id_update.json")
    msg = data["message"]
    for key in ("text", "entities"):
        msg.pop(key)
    msg["chat"] = {"id": 5, "type": "private", "first_name": "Ann"}
    msg["video"] = {"file_id": "vid", "file_unique_id": "vu", "width": 640, "height": 480,
                    "duration": 3}
    event = to_incoming(message_of(data), ME)
    assert event is not None and event.is_private
    assert [a.kind for a in event.attachments] == [AttachmentKind.VIDEO]


def test_a_lone_surrogate_in_text_does_not_break_translation() -> None:
    update = load("telegram_supergroup_reply_chain_thread_id_update.json")
    message = with_text(update, "@ChatbrushTestBot make it \ud83d red")
    assert prompt_text(message, ME).startswith("make it ")


def test_mention_in_caption_addresses_the_bot_case_insensitively() -> None:
    update = load("telegram_photo_supergroup_update.json")
    message = with_text(update, "@chatbrushtestbot make the sky purple", caption=True)
    assert is_addressed(message, ME)
    assert prompt_text(message, ME) == "make the sky purple"


def test_mention_offsets_are_utf16() -> None:
    update = load("telegram_supergroup_reply_chain_thread_id_update.json")
    message = with_text(update, "🎨🎨 hey @ChatbrushTestBot, add a hat 🎩 please")
    assert is_addressed(message, ME)
    assert prompt_text(message, ME) == "🎨🎨 hey, add a hat 🎩 please"


def test_mentions_of_other_people_stay_in_the_prompt() -> None:
    update = load("telegram_supergroup_reply_chain_thread_id_update.json")
    message = with_text(update, "@ChatbrushTestBot put @alice in a spacesuit")
    assert prompt_text(message, ME) == "put @alice in a spacesuit"
    assert not is_addressed(with_text(update, "ask @alice about it"), ME)


def test_reply_to_the_bot_addresses_it() -> None:
    data = load("telegram_supergroup_reply_chain_thread_id_update.json")
    msg = data["message"]
    msg["text"] = "now make it blue"
    msg.pop("entities")
    msg["reply_to_message"]["from"] = {"id": ME.id, "is_bot": True, "first_name": "Chatbrush"}
    assert is_addressed(message_of(data), ME)
    msg["reply_to_message"]["from"] = {"id": 42, "is_bot": False, "first_name": "Bob"}
    assert not is_addressed(message_of(data), ME)


def test_anonymous_admin_speaks_for_the_chat() -> None:
    data = load("telegram_supergroup_reply_chain_thread_id_update.json")
    msg = data["message"]
    msg["from"] = GROUP_ANONYMOUS_BOT
    msg["sender_chat"] = msg["chat"]
    message = message_of(data)
    assert speaks_for_chat(message)
    assert sender_of(message).id == str(msg["chat"]["id"])


def test_stickers_and_voice_are_other_content() -> None:
    data = load("telegram_supergroup_reply_chain_thread_id_update.json")
    msg = data["message"]
    msg.pop("text")
    msg.pop("entities")
    msg["voice"] = {"file_id": "v", "file_unique_id": "vu", "duration": 3}
    assert [a.kind for a in attachments_of(message_of(data))] == [AttachmentKind.OTHER]


def test_photo_limits() -> None:
    assert fits_photo(1_000_000, 1024, 1024)
    assert not fits_photo(11 * 1024 * 1024, 1024, 1024)
    assert not fits_photo(1000, 6000, 4500)
    assert not fits_photo(1000, 2100, 100)
    assert fits_photo(1000, 2000, 100)


def test_split_text_keeps_every_character_under_the_limit() -> None:
    text = "\n".join(f"line {n} " + "x" * 90 for n in range(120))
    chunks = split_text(text)
    assert all(len(c) <= 4096 for c in chunks) and len(chunks) == 3
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")
