"""Content Credentials at delivery: real engine, SQLite file, fake Gemini and the real c2pa
library; every manifest is read back with ``c2pa.Reader``."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from bot.app.runtime import Runtime
from bot.core.config import Settings
from bot.core.events import ChatKey
from bot.core.store import NewImage, NewPart
from bot.kit.image_types import OutputImage
from bot.policy.chat_settings import ChatSettings
from bot.provenance.outgoing import Provenance, credentials_directory, ingredient_refs
from tests.fakes.gemini import FakeGemini
from tests.harness import (
    ANN,
    Chat,
    RecordingPlatform,
    ingredients_of,
    manifest_of,
    photo,
    pixels,
    running_bot,
    settings_for,
    software_agents,
)
from tests.version_fixtures import ThreadBuilder, picture

PRIVATE = ChatKey("telegram", "42")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def answered_picture(fake: FakeGemini, index: int = -1) -> bytes:
    """The picture the model sent in answer ``index``, as it sent it."""
    parts = fake.answers[index]["candidates"][0]["content"]["parts"]
    [data] = [base64.b64decode(p["inlineData"]["data"]) for p in parts
              if "inlineData" in p and not p.get("thought")]
    return data


async def test_every_answer_goes_out_signed_with_its_inputs_and_the_store_keeps_the_original(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    v1 = await dm.say("make it watercolor", photo())
    manifest = manifest_of(v1.images[0].data)
    assert manifest["validation_state"] == "Valid"
    assert software_agents(manifest) == [bot.model.name]
    [sent_input] = fake.requests[-1].images("user")
    assert ingredients_of(manifest) == [("parentOf", sha(sent_input))]
    assert "make it watercolor" not in str(manifest)  # prompts are private by default

    # the stored answer is byte for byte what the model sent (it is replayed verbatim)
    model_turn = await bot.store.linked_turn(PRIVATE, v1.ids[0])
    assert model_turn is not None
    stored = await bot.store.image_bytes(model_turn.images[0].sha256)
    assert stored == answered_picture(fake) != v1.images[0].data
    assert pixels(stored) == pixels(v1.images[0].data)

    # the next edit names the picture being edited: v1 as stored, not the signed copy
    v2 = await dm.say("now add a hat")
    assert ingredients_of(manifest_of(v2.images[0].data)) == [("parentOf", sha(stored))]
    assert fake.requests[-1].images("model")[-1] == stored


async def test_a_fusion_lists_the_edited_picture_first_then_the_new_ones(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    await dm.say("watercolor", photo())
    v1 = answered_picture(fake)
    fused = await dm.say("put this hat on it", photo((0, 0, 200)), photo((0, 200, 0)))
    new_inputs = fake.requests[-1].images("user")[-2:]
    assert ingredients_of(manifest_of(fused.images[0].data)) == [
        ("parentOf", sha(v1)), ("componentOf", sha(new_inputs[0])),
        ("componentOf", sha(new_inputs[1]))]


async def test_a_resend_is_signed_again(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    dm = Chat(bot, platform, PRIVATE, private=True)
    first = await dm.say("watercolor", photo())
    again = await dm.say("/resend")
    assert again.kind == "images"
    assert manifest_of(again.images[0].data)["validation_state"] == "Valid"
    assert ingredients_of(manifest_of(again.images[0].data)) == ingredients_of(
        manifest_of(first.images[0].data))
    # the user's own picture (after /undo to the original) is theirs: sent unsigned
    await dm.say("/undo")
    original = await dm.say("/resend")
    assert original.images[0].data == fake.requests[0].images("user")[0]


async def test_with_signing_off_the_models_bytes_go_out_unchanged(
    tmp_path: Path, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    settings = settings_for(tmp_path, fake, chatbrush_c2pa=False)
    async with running_bot(settings, platform) as bot:
        dm = Chat(bot, platform, PRIVATE, private=True)
        v1 = await dm.say("watercolor", photo())
    assert v1.images[0].data == answered_picture(fake)
    assert not (tmp_path / "bot-c2pa").exists()


async def test_a_chat_can_ask_for_originals_and_for_its_prompts_in_the_credentials(
    bot: Runtime, platform: RecordingPlatform
) -> None:
    group = Chat(bot, platform, ChatKey("telegram", "-77"), private=False)
    group.channel.admins.add(ANN.id)
    first = await group.say("a fox in the snow")
    assert not first.as_files and "a fox in the snow" not in str(manifest_of(
        first.images[0].data))
    await group.say("/settings send_originals on")
    await group.say("/settings credentials_prompt on")
    answer = await group.say("a fox in the rain")
    assert answer.as_files  # as files: Telegram sends documents, which keep the manifest
    manifest = manifest_of(answer.images[0].data)
    assert manifest["validation_state"] == "Valid" and "a fox in the rain" in str(manifest)


async def test_the_prompt_is_in_the_credentials_only_where_the_chat_allows_it(
    bot: Runtime,
) -> None:
    store = bot.store
    thread = await store.create_thread(PRIVATE, lane="L")
    user = await store.add_turn(thread.id, parent_id=None, role="user",
                                parts=[NewPart(image=NewImage(photo(), "image/jpeg", 320, 240)),
                                       NewPart(text="a fox in the snow")])
    answer = await store.add_turn(thread.id, parent_id=user.id, role="model",
                                  author_name="gemini-test",
                                  parts=[NewPart(image=NewImage(photo((9, 9, 9)),
                                                                "image/jpeg", 320, 240))])
    outputs = [OutputImage(photo((9, 9, 9)), "image/jpeg", 320, 240)]
    provenance = bot.turns.provenance
    private = ChatSettings(model="gemini-test")
    shared = ChatSettings(model="gemini-test", credentials_prompt=True)
    closed = manifest_of((await provenance.outgoing(answer, outputs, private)).images[0].data,
                         "image/jpeg")
    opened = manifest_of((await provenance.outgoing(answer, outputs, shared)).images[0].data,
                         "image/jpeg")
    assert "a fox in the snow" not in str(closed) and "a fox in the snow" in str(opened)
    assert software_agents(opened) == ["gemini-test"]
    # a person's own picture is never signed as the model's
    own = await provenance.outgoing(user, outputs, shared)
    assert own.images == outputs and not own.as_files


async def test_inputs_whose_bytes_are_gone_are_left_out(bot: Runtime) -> None:
    store = bot.store
    thread = await store.create_thread(PRIVATE, lane="L")
    user = await store.add_turn(thread.id, parent_id=None, role="user", author_id="7",
                                parts=[NewPart(image=NewImage(photo(), "image/jpeg", 320, 240)),
                                       NewPart(text="x")])
    answer = await store.add_turn(thread.id, parent_id=user.id, role="model", author_name="m",
                                  parts=[NewPart(text="ok")])
    await store.forget_author("telegram", "7", chat_id=None)
    outputs = [OutputImage(photo((1, 2, 3)), "image/jpeg", 320, 240)]
    signed = await Provenance(store, bot.turns.provenance.credentials).outgoing(
        answer, outputs, ChatSettings(model="m"))
    assert ingredients_of(manifest_of(signed.images[0].data, "image/jpeg")) == []


def test_ingredients_follow_the_context_policy() -> None:
    b = ThreadBuilder()
    photo_turn = b.user(None, "", images=[picture((1, 2, 3))])
    ask = b.user(photo_turn, "watercolor")
    v1 = b.model(ask, images=[picture((4, 5, 6))])
    ask2 = b.user(v1, "fuse with this", images=[picture((7, 8, 9))])
    assert ingredient_refs([photo_turn, ask]) == photo_turn.images
    assert ingredient_refs([photo_turn, ask, v1, ask2]) == [*v1.images, *ask2.images]


def test_the_key_pair_lives_beside_the_database_or_where_told(tmp_path: Path) -> None:
    settings = Settings(chatbrush_db=str(tmp_path / "data" / "bot.db"))
    assert credentials_directory(settings, settings.chatbrush_db) == tmp_path / "data" / "bot-c2pa"
    assert credentials_directory(settings, "postgresql://db/chatbrush") == (
        tmp_path / "chatbrush-c2pa")  # the working directory (tests run in tmp_path)
    told = Settings(chatbrush_c2pa_dir=str(tmp_path / "keys"))
    assert credentials_directory(told, "postgresql://db/chatbrush") == tmp_path / "keys"


async def test_the_picture_being_edited_is_found_beyond_the_recent_turns(bot: Runtime) -> None:
    store = bot.store
    thread = await store.create_thread(PRIVATE, lane="L")
    ask = await store.add_turn(thread.id, parent_id=None, role="user",
                               parts=[NewPart(text="a fox")])
    v1 = await store.add_turn(thread.id, parent_id=ask.id, role="model", author_name="m",
                              parts=[NewPart(image=NewImage(photo(), "image/jpeg", 320, 240))])
    parent = v1
    for words in ("what is this?", "it is a fox", "make it blue"):
        parent = await store.add_turn(thread.id, parent_id=parent.id,
                                      role="model" if words.startswith("it") else "user",
                                      parts=[NewPart(text=words)])
    answer = await store.add_turn(thread.id, parent_id=parent.id, role="model",
                                  author_name="m", parts=[NewPart(text="ok")])
    provenance = Provenance(store, bot.turns.provenance.credentials, path_limit=2)
    outputs = [OutputImage(photo((0, 0, 250)), "image/jpeg", 320, 240)]
    signed = await provenance.outgoing(answer, outputs, ChatSettings(model="m"))
    assert ingredients_of(manifest_of(signed.images[0].data, "image/jpeg")) == [
        ("parentOf", v1.images[0].sha256)]
