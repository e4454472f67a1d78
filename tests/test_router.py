"""The router end to end: real intake, turn service, SQLite file and fake Gemini. What an
event is decides where it goes; a command's spec is enforced before its handler runs; the
chat's settings are read again when the intake could not read them; and a refusal raised
anywhere reaches a Chinese chat in Chinese."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from bot.app.runtime import Runtime
from bot.core.errors import LazyText, UserFacingError
from bot.core.events import ChatKey, Sender
from bot.flow.commands import ROUTES, CommandRoute, CommandSpec
from bot.flow.commands.command_context import CommandContext
from bot.flow.router import Router
from bot.kit.i18n import N_, speaking
from tests.fakes.gemini import FakeGemini
from tests.harness import ANN, Chat, RecordingPlatform, photo, running_bot, settings_for

OPERATOR = Sender("99", "Op")
DM = ChatKey("telegram", "42")


async def test_an_admin_only_command_runs_for_operators_and_is_refused_to_others(
    tmp_path: Path, fake: FakeGemini
) -> None:
    """The router reads ``admin_only``: a handler never checks who asked."""
    ran: list[str] = []

    async def secret(ctx: CommandContext) -> None:
        ran.append(ctx.event.sender.id)
        await ctx.say("the secret numbers")

    platform = RecordingPlatform()
    settings = settings_for(tmp_path, fake, chatbrush_admins="telegram:99")
    async with running_bot(settings, platform) as bot:
        spec = CommandSpec("secret", "/secret", "operators' numbers", admin_only=True)
        bot.intake.router = Router(bot.turns, commands=(*ROUTES, CommandRoute(spec, secret)))
        chat = Chat(bot, platform, ChatKey("telegram", "-1001"), private=False)
        refused = await chat.say("/secret")
        assert refused.text == "Sorry, that command is for the bot's operators."
        assert ran == []
        assert (await chat.say("/secret", sender=OPERATOR)).text == "the secret numbers"
        assert ran == ["99"]


async def test_stats_are_refused_to_people_who_are_not_operators(
    tmp_path: Path, fake: FakeGemini
) -> None:
    platform = RecordingPlatform()
    settings = settings_for(tmp_path, fake, chatbrush_admins="telegram:99")
    async with running_bot(settings, platform) as bot:
        chat = Chat(bot, platform, ChatKey("telegram", "-1001"), private=False)
        assert (await chat.say("/stats")).text == (
            "Sorry, that command is for the bot's operators.")
        assert "Today (UTC)" in ((await chat.say("/stats", sender=OPERATOR)).text or "")


async def test_an_edit_goes_through_when_the_chats_settings_could_not_be_read_at_first(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intake could not read the settings (it answers in the sender's language then);
    the turn reads them itself instead of asking itself forever."""
    store = bot.store
    read = store.chat_settings
    failures = [RuntimeError("the database is restarting")]

    async def flaky(chat: ChatKey) -> Mapping[str, str]:
        if failures:
            raise failures.pop()
        return await read(chat)

    monkeypatch.setattr(store, "chat_settings", flaky)
    dm = Chat(bot, platform, DM, private=True)
    answer = await dm.say("make it watercolor", photo())
    assert answer.kind == "images"
    assert (answer.text or "").startswith("v1")
    assert len(fake.requests) == 1


async def test_a_linked_edit_refusal_reaches_a_chinese_chat_in_chinese(
    bot: Runtime, fake: FakeGemini, platform: RecordingPlatform
) -> None:
    """/each with ten photos of its own, replying to ten more: the count is known only
    once the pictures are gathered, deep in the linked edit; the refusal is still said in
    the chat's language."""
    platform.languages[ANN.id] = "zh-hans"
    dm = Chat(bot, platform, DM, private=True)
    told = await dm.say("/each make the background white", *[photo()] * 10,
                        reply_to="777", reply_images=[photo()] * 10)
    assert told.text == "文件太多了，我一次处理不了（20 个）；请最多发送 16 个。"
    assert fake.requests == []


def test_a_user_facing_error_is_worded_when_it_is_shown() -> None:
    with speaking("en"):
        error = UserFacingError(LazyText(N_("That conversation was reset. Please send it "
                                            "again.")))
    with speaking("zh_Hans"):
        chinese = str(error)
    with speaking("en"):
        english = str(error)
    assert english == "That conversation was reset. Please send it again."
    assert chinese != english and "对话" in chinese
