"""Per-chat settings: what admins may type, how it is stored and read back, and the
engine drawing with the chat's model and aspect ratio (end to end with the fake Gemini)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.config import Settings
from bot.core.events import ChatKey, Sender
from bot.models.options import aspect_ratios, image_sizes, nearest_ratio
from bot.policy.chat_settings import ChatLimits, SettingError, parse, resolve
from tests.fakes.gemini import FakeGemini
from tests.harness import ANN, BOB, Chat, RecordingPlatform, photo, running_bot, settings_for

GROUP = ChatKey("telegram", "-1001")
MODELS = ("gemini-2.5-flash-image", "gemini-3-pro-image-preview")
OPERATOR_LIMITS = ChatLimits(user_daily=1_000_000, chat_daily=None, user_per_minute=5)


def allowed(name: str) -> str | None:
    return name if name in MODELS else None


def typed(name: str, value: str, *, model: str = "gemini-3-pro-image-preview",
          by_operator: bool = False) -> str | None:
    return parse(name, value, model=model, models=MODELS, allowed_model=allowed,
                 operator=OPERATOR_LIMITS, by_operator=by_operator)


@pytest.mark.parametrize(("name", "value", "stored"), [
    ("aspect", "16x9", "16:9"), ("aspect", "AUTO", "auto"), ("size", "2k", "2K"),
    ("language", "zh", "zh_Hans"), ("language", "中文", "zh_Hans"), ("language", "en-GB", "en"),
    ("language", "auto", None), ("daily", "$2.50", "2.5"), ("user_daily", "0.5", "0.5"),
    ("per_minute", "3", "3"), ("send_originals", "on", "on"), ("credentials_prompt", "no", "off"),
    ("blocked_terms", "cat, 狗，bird", '["cat", "狗", "bird"]'), ("aspect", "default", None),
    ("model", "gemini-2.5-flash-image", "gemini-2.5-flash-image"),
])
def test_typed_values_are_stored_normalised(name: str, value: str, stored: str | None) -> None:
    assert typed(name, value) == stored


@pytest.mark.parametrize(("name", "value", "says"), [
    ("aspect", "7:3", "Choose one of 1:1, 2:3"),
    ("size", "8K", "Choose one of 1K, 2K, 4K"),
    ("model", "gpt-image-1", "gemini-2.5-flash-image, gemini-3-pro-image-preview"),
    ("language", "fr", "English (en) and Simplified Chinese (zh)"),
    ("daily", "lots", "like 2.50"),
    ("user_daily", "2", "at most $1.00"),  # the operator allows $1 a day per person
    ("user_daily", "none", "Only the bot's operators"),
    ("per_minute", "6", "at most 5 a minute here"),
    ("per_minute", "0", "from 1 to"),
    ("send_originals", "maybe", "on or off"),
])
def test_invalid_values_are_refused_saying_what_works(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingError) as refused:
        typed(name, value)
    assert says in str(refused.value)


def test_gemini_2_5_has_no_sizes_and_3_1_flash_has_tall_ratios() -> None:
    with pytest.raises(SettingError, match="always draws at one size"):
        typed("size", "2K", model="gemini-2.5-flash-image")
    assert image_sizes("openai:google/gemini-2.5-flash-image") == ()
    assert "1:8" in aspect_ratios("gemini-3.1-flash-image-preview")
    assert "1:8" not in aspect_ratios("gemini-3-pro-image-preview")


def test_operators_may_raise_or_lift_limits_and_chats_only_lower_them() -> None:
    settings = Settings(chatbrush_user_daily_usd=1.0, chatbrush_user_per_minute=5)

    def limits(stored: dict[str, str]) -> ChatLimits:
        return resolve(settings, stored, default_model=MODELS[0], allowed_model=allowed).limits

    assert limits({}).user_daily == 1_000_000  # the operator's dollar, in micro-dollars
    assert typed("user_daily", "none", by_operator=True) == "=none"
    assert limits({"user_daily": "=none"}).user_daily is None
    assert limits({"user_daily": "=3"}).user_daily == 3_000_000
    assert limits({"user_daily": "0.25"}).user_daily == 250_000
    # a chat's value never passes the operator's, even one stored before it was lowered
    assert limits({"user_daily": "3"}).user_daily == 1_000_000
    assert limits({"per_minute": "2"}).user_per_minute == 2
    assert limits({}).user_per_minute == 5


def test_stale_choices_fall_back_to_the_defaults() -> None:
    settings = Settings(gemini_aspect_ratio="4:3")
    chosen = resolve(settings, {"model": "retired-model", "aspect": "1:8", "size": "4K",
                                "blocked_terms": "not json"},
                     default_model=MODELS[0], allowed_model=allowed)
    assert (chosen.model, chosen.aspect_ratio, chosen.image_size, chosen.blocked_terms) == (
        MODELS[0], "4:3", None, ())


def test_auto_picks_the_closest_shape() -> None:
    ratios = aspect_ratios("gemini-2.5-flash-image")
    assert nearest_ratio(1920, 1080, ratios) == "16:9"
    assert nearest_ratio(1000, 1500, ratios) == "2:3"
    assert nearest_ratio(3000, 1000, ratios) == "21:9"
    assert nearest_ratio(0, 10, ratios) is None


# ---------------------------------------------------------------------- end to end
@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server


async def test_an_admin_changes_a_setting_and_a_member_may_only_look(
    tmp_path: Path, fake: FakeGemini
) -> None:
    platform = RecordingPlatform()
    async with running_bot(settings_for(tmp_path, fake), platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        group.channel.admins.add(ANN.id)
        shown = (await group.say("/settings", sender=BOB)).text or ""
        assert "Aspect ratio (aspect): the model's default" in shown
        refused = await group.say("/settings aspect 16:9", sender=BOB)
        assert refused.text == "Only this chat's admins can change its settings."
        done = await group.say("/settings aspect 16:9", sender=ANN)
        assert done.text == "Done: aspect is now 16:9."
        assert "Aspect ratio (aspect): 16:9" in ((await group.say("/settings")).text or "")
        await group.say("make it wide", photo())
        assert fake.requests[-1].generation_config["imageConfig"]["aspectRatio"] == "16:9"
        bad = await group.say("/settings aspect 7:3", sender=ANN)
        assert "“7:3” is not an aspect ratio gemini-2.5-flash-image can draw" in (bad.text or "")
        unknown = await group.say("/settings colour red", sender=ANN)
        assert "There is no setting called “colour”" in (unknown.text or "")
        back = await group.say("/settings aspect default", sender=ANN)
        assert back.text == "Done: aspect is back to the bot's default (the model's default)."


async def test_auto_aspect_keeps_the_shape_of_the_picture_being_edited(
    tmp_path: Path, fake: FakeGemini
) -> None:
    platform = RecordingPlatform()
    async with running_bot(settings_for(tmp_path, fake), platform) as bot:
        dm = Chat(bot, platform, ChatKey("telegram", "42"), private=True)
        await dm.say("/settings aspect auto")
        await dm.say("a cat")  # no picture yet: the model chooses
        assert "aspectRatio" not in fake.requests[-1].generation_config.get("imageConfig", {})
        await dm.say("watercolor", photo(size=(900, 1600)))
        assert fake.requests[-1].generation_config["imageConfig"]["aspectRatio"] == "9:16"


async def test_a_chat_draws_with_the_model_it_chose(tmp_path: Path, fake: FakeGemini) -> None:
    platform = RecordingPlatform()
    settings = settings_for(tmp_path, fake, chatbrush_models="gemini-3-pro-image-preview")
    async with running_bot(settings, platform, catalog=True) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        group.channel.admins.add(ANN.id)
        await group.say("watercolor", photo())
        assert fake.requests[-1].model == "gemini-2.5-flash-image"
        await group.say("/settings model gemini-3-pro-image-preview", sender=ANN)
        await group.say("/settings size 4K", sender=ANN)
        reply = await group.say("oil painting", photo())
        assert reply.kind == "images"
        assert fake.requests[-1].model == "gemini-3-pro-image-preview"
        assert fake.requests[-1].generation_config["imageConfig"]["imageSize"] == "4K"
        # back to a model without sizes: the size is dropped, and the admin is told
        switched = await group.say("/settings model gemini-2.5-flash-image", sender=ANN)
        assert "has no size 4K" in (switched.text or "")
        await group.say("pastel", photo())
        assert "imageSize" not in fake.requests[-1].generation_config.get("imageConfig", {})
        other = await Chat(bot, platform, ChatKey("telegram", "-2"), private=False).say(
            "watercolor", photo(), sender=Sender("5", "Eve"))
        assert other.kind == "images" and fake.requests[-1].model == "gemini-2.5-flash-image"
