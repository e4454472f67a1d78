"""Discord end to end: the real discord.py client on a real WebSocket gateway and REST
routes of the fake Discord, the real engine on a real SQLite file, the fake Gemini.

Assertions are on what people in the server would see: the bot's replies, their pictures
and captions, the "thinking…" of a slash command, and nothing answered twice.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.platform import create
from bot.app.runtime import Runtime, open_runtime
from bot.core.config import Settings, load_settings
from bot.flow.intake import Intake
from tests.fakes.discord_api import (
    ADMINISTRATOR,
    MANAGE_GUILD,
    MESSAGE_CONTENT_INTENT,
    FakeDiscord,
    Sent,
)
from tests.fakes.gemini import FakeGemini
from tests.harness import pixels

GUILD, CHANNEL, THREAD, DM = "900001", "900002", "900003", "900004"
ALICE, BOB, ADA, OWNER = "800001", "800002", "800003", "800004"


def png(color: str = "red", size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@dataclass
class Rig:
    discord: FakeDiscord
    gemini: FakeGemini
    adapter: DiscordAdapter
    intake: Intake

    async def answered(self, channel: str, count: int) -> list[Sent]:
        """Once the bot has sent ``count`` messages to ``channel`` and is idle again."""
        await self.discord.wait_for(lambda: len(self.discord.sent_to(channel)) >= count)
        await self.intake.drain()
        return self.discord.sent_to(channel)

    async def say(self, channel: str, user: str, text: str, *, expect: int | None = 1,
                  **kwargs: Any) -> dict[str, Any]:
        """A person posts; waits for ``expect`` more messages of the bot there."""
        before = len(self.discord.sent_to(channel))
        message = await self.discord.say(channel, user, text, **kwargs)
        if expect:
            await self.answered(channel, before + expect)
        return message


def settings_for(discord: FakeDiscord, gemini: FakeGemini, tmp: Path, **extra: Any
                 ) -> Settings:
    return load_settings(
        discord_bot_token=discord.bot_token,
        discord_api_base=discord.api_base,
        discord_gateway_url=discord.gateway_url,
        gemini_api_key=gemini.api_key,
        gemini_base_url=gemini.base_url,
        gemini_max_attempts=1,
        chatbrush_db=str(tmp / "chatbrush.db"),
        **extra,
    )


@asynccontextmanager
async def running(discord: FakeDiscord, gemini: FakeGemini, tmp: Path, **extra: Any
                  ) -> AsyncIterator[Rig]:
    """``chatbrush run`` with Discord: the gateway connected, the intake processing."""
    settings = settings_for(discord, gemini, tmp, **extra)
    runtime: Runtime
    async with open_runtime(settings) as runtime:
        adapter = create(settings, runtime.intake)
        assert isinstance(adapter, DiscordAdapter)
        runtime.intake.register(adapter)
        runtime.intake.queued_notice_delay = 0
        await runtime.intake.start()
        await adapter.start(webhook=False)
        try:
            yield Rig(discord, gemini, adapter, runtime.intake)
        finally:
            await adapter.stop_receiving()
            await runtime.intake.stop(grace=5)
            await adapter.close()


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeDiscord, FakeGemini]]:
    async with FakeDiscord() as discord, FakeGemini() as gemini:
        for user, name in ((ALICE, "alice"), (BOB, "bob"), (ADA, "ada"), (OWNER, "olive")):
            discord.add_user(user, name)
        discord.add_guild(GUILD, owner_id=OWNER, channels=[CHANNEL])
        discord.add_thread(GUILD, THREAD, CHANNEL)
        discord.add_member(GUILD, ADA, permissions=MANAGE_GUILD)
        discord.add_member(GUILD, ALICE)
        discord.add_member(GUILD, BOB)
        discord.channel_guild[DM] = None
        yield discord, gemini


@pytest.fixture
async def rig(servers: tuple[FakeDiscord, FakeGemini], tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(*servers, tmp_path) as r:
        yield r


def picture_of(sent: Sent) -> bytes:
    [(name, data)] = sent.files
    assert name.endswith(".png")
    return data


# ---------------------------------------------------------------------- conversations
async def test_a_direct_message_with_a_picture_is_answered_with_the_edited_picture(
        rig: Rig) -> None:
    photo = rig.discord.host_file(png("red"), "shirt.png")
    message = await rig.say(DM, ALICE, "make the shirt blue", files=[photo])

    [answer] = rig.discord.sent_to(DM)
    assert answer.reply_to == message["id"]
    assert answer.content.startswith("v1")
    assert pixels(picture_of(answer)) != pixels(png("red"))
    assert "make the shirt blue" in rig.gemini.last.prompt
    assert len(rig.gemini.last.images("user")) == 1
    assert DM in rig.discord.typing
    # no message-content intent was asked for: DMs and mentions carry their words anyway
    assert not rig.discord.identifies[-1] & MESSAGE_CONTENT_INTENT

    await rig.say(DM, ALICE, "now add a hat")  # a DM continues without a reply
    assert rig.gemini.last.parts("model"), "the DM continues the conversation"


async def test_a_mention_in_a_server_channel_starts_a_conversation(rig: Rig) -> None:
    photo = rig.discord.host_file(png("green"), "cat.png")
    await rig.say(CHANNEL, BOB, "chat about cats", expect=None)
    message = await rig.say(CHANNEL, ALICE, "make it a watercolor", files=[photo],
                            mention_bot=True)

    [answer] = rig.discord.sent_to(CHANNEL)
    assert answer.reply_to == message["id"] and picture_of(answer)
    assert rig.gemini.last.prompt.strip() == "make it a watercolor"
    assert len(rig.gemini.requests) == 1  # the unaddressed message was not for the bot


async def test_a_reply_to_the_picture_continues_and_an_older_one_branches(rig: Rig) -> None:
    photo = rig.discord.host_file(png("red"), "cat.png")
    await rig.say(CHANNEL, ALICE, "make it a watercolor", files=[photo], mention_bot=True)
    first = rig.discord.sent_to(CHANNEL)[-1]

    await rig.say(CHANNEL, BOB, "now add a hat", reply_to=first.id)
    second = rig.discord.sent_to(CHANNEL)[-1]
    assert second.content.startswith("v2")
    assert len(rig.gemini.last.contents) == 3  # v1's request, v1, the hat

    await rig.say(CHANNEL, ALICE, "make it night instead", reply_to=first.id)
    branch = rig.discord.sent_to(CHANNEL)[-1]
    # the context is v1's path: the hat (v2) is not in it
    assert "now add a hat" not in rig.gemini.last.texts("user")
    assert len(rig.gemini.last.contents) == 3
    assert branch.reply_to is not None and branch.content.startswith("v3")


async def test_a_discord_thread_is_one_conversation(rig: Rig) -> None:
    photo = rig.discord.host_file(png("blue"), "sky.png")
    await rig.say(THREAD, ALICE, "add stars", files=[photo], mention_bot=True)
    await rig.say(THREAD, BOB, "brighter", mention_bot=True)
    assert rig.gemini.last.parts("model"), "a mention in the thread continues it"


async def test_a_thread_follow_up_without_a_mention_needs_the_content_intent(
        servers: tuple[FakeDiscord, FakeGemini], tmp_path: Path) -> None:
    discord, gemini = servers
    photo = discord.host_file(png("blue"), "sky.png")
    async with running(discord, gemini, tmp_path) as rig:
        await rig.say(THREAD, ALICE, "add stars", files=[photo], mention_bot=True)
        await rig.say(THREAD, BOB, "brighter", expect=None)  # arrives empty: not answered
        await rig.intake.drain()
    assert len(gemini.requests) == 1
    async with running(discord, gemini, tmp_path, discord_message_content=True) as rig:
        assert discord.identifies[-1] & MESSAGE_CONTENT_INTENT
        await rig.say(THREAD, BOB, "more stars")
        assert rig.gemini.last.prompt.strip() == "more stars"
        assert rig.gemini.last.parts("model"), "it continues the thread's conversation"


async def test_several_attachments_are_fused_and_each_edits_them_one_by_one(rig: Rig) -> None:
    files = [rig.discord.host_file(png(c), f"{c}.png") for c in ("red", "blue")]
    await rig.say(CHANNEL, ALICE, "put them side by side", files=files, mention_bot=True)
    assert len(rig.gemini.requests) == 1
    assert len(rig.gemini.last.images("user")) == 2

    files = [rig.discord.host_file(png(c), f"{c}.png") for c in ("green", "white")]
    await rig.say(CHANNEL, BOB, "each make it sepia", files=files, mention_bot=True,
                  expect=2)
    assert len(rig.gemini.requests) == 3
    assert sum(1 for s in rig.discord.sent_to(CHANNEL) if s.files) == 3


async def test_an_expired_attachment_link_is_renewed_from_its_message(rig: Rig) -> None:
    photo = rig.discord.host_file(png("red"), "cat.png")
    message = await rig.say(CHANNEL, BOB, "look at my cat", files=[photo], expect=None)
    rig.discord.expire_links()  # a day later, someone asks the bot about that picture
    await rig.say(CHANNEL, ALICE, "make it a watercolor", reply_to=message["id"],
                  mention_bot=True)
    assert len(rig.gemini.last.images("user")) == 1
    assert rig.discord.downloads[-1].endswith("?ex=2")


async def test_a_picture_over_the_size_limit_is_refused_before_download(
        servers: tuple[FakeDiscord, FakeGemini], tmp_path: Path) -> None:
    async with running(*servers, tmp_path, chatbrush_max_upload_bytes=20) as rig:
        photo = rig.discord.host_file(png("red"), "big.png")
        await rig.say(CHANNEL, ALICE, "edit", files=[photo], mention_bot=True)
        [answer] = rig.discord.sent_to(CHANNEL)
        assert "too large" in answer.content and not answer.files
        assert rig.gemini.requests == []


# ---------------------------------------------------------------------- slash commands
async def test_slash_commands_are_registered_and_edit_is_deferred_then_answered(
        rig: Rig) -> None:
    names = {c["name"] for c in rig.discord.commands}
    assert names == {"edit", "each", "help", "new", "undo", "history", "reset", "usage",
                     "export", "forget", "settings"}
    photo = rig.discord.host_file(png("red"), "cat.png")
    interaction = await rig.discord.slash(CHANNEL, ALICE, "edit",
                                          options={"instruction": "make it pop art"},
                                          files={"image": photo})
    [answer] = await rig.answered(CHANNEL, 1)
    assert answer.via == "followup" and picture_of(answer)
    [callback] = rig.discord.callbacks
    assert callback["id"] == interaction["id"] and callback["type"] == 5  # deferred
    assert "make it pop art" in rig.gemini.last.prompt

    await rig.discord.slash(CHANNEL, ALICE, "help")
    help_text = (await rig.answered(CHANNEL, 2))[-1]
    assert "/edit" in help_text.content or "Mention me" in help_text.content


async def test_an_admin_may_reset_and_a_member_is_refused(rig: Rig) -> None:
    photo = rig.discord.host_file(png("red"), "cat.png")
    await rig.say(THREAD, ALICE, "make it a watercolor", files=[photo], mention_bot=True)

    await rig.discord.slash(THREAD, BOB, "reset")
    refused = (await rig.answered(THREAD, 2))[-1]
    assert "only chat admins" in refused.content
    await rig.discord.slash(THREAD, ADA, "reset")  # Manage Server
    allowed = (await rig.answered(THREAD, 3))[-1]
    assert allowed.content.startswith("Done")


async def test_a_member_with_administrator_may_reset_by_a_reply(rig: Rig) -> None:
    rig.discord.add_member(GUILD, ALICE, permissions=ADMINISTRATOR)
    photo = rig.discord.host_file(png("red"), "cat.png")
    await rig.say(CHANNEL, BOB, "make it a watercolor", files=[photo], mention_bot=True)
    picture = rig.discord.sent_to(CHANNEL)[-1]
    await rig.say(CHANNEL, BOB, "reset", reply_to=picture.id)
    assert "only chat admins" in rig.discord.sent_to(CHANNEL)[-1].content
    await rig.say(CHANNEL, ALICE, "reset", reply_to=picture.id)
    assert rig.discord.sent_to(CHANNEL)[-1].content.startswith("Done")


async def test_chinese_locale_of_an_interaction_is_answered_in_chinese(rig: Rig) -> None:
    await rig.discord.slash(CHANNEL, ALICE, "help", locale="zh-CN")
    [answer] = await rig.answered(CHANNEL, 1)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer.content)


async def test_a_server_whose_language_is_chinese_is_answered_in_chinese(
        servers: tuple[FakeDiscord, FakeGemini], tmp_path: Path) -> None:
    discord, gemini = servers
    discord.guilds[GUILD].preferred_locale = "zh-CN"  # arrives with GUILD_CREATE
    async with running(discord, gemini, tmp_path) as rig:
        await rig.say(CHANNEL, ALICE, "help", mention_bot=True)
        [answer] = rig.discord.sent_to(CHANNEL)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in answer.content)


# ---------------------------------------------------------------------- nothing lost
async def test_messages_sent_while_the_bot_was_down_are_caught_up_and_answered_once(
        servers: tuple[FakeDiscord, FakeGemini], tmp_path: Path) -> None:
    discord, gemini = servers
    photo = discord.host_file(png("red"), "cat.png")
    async with running(discord, gemini, tmp_path) as rig:
        await rig.say(CHANNEL, ALICE, "make it a watercolor", files=[photo], mention_bot=True)
        await rig.say(DM, BOB, "draw a boat")
    assert not discord.connected

    missed = await discord.say(CHANNEL, BOB, "now add a hat", mention_bot=True,
                               reply_to=discord.sent_to(CHANNEL)[-1].id)
    await discord.say(DM, BOB, "make the sea green")
    await discord.say(CHANNEL, ALICE, "just chatting")  # not for the bot

    async with running(discord, gemini, tmp_path) as rig:
        await rig.answered(CHANNEL, 2)
        await rig.answered(DM, 2)
        assert discord.sent_to(CHANNEL)[-1].reply_to == missed["id"]
    async with running(discord, gemini, tmp_path) as rig:  # and once only
        await rig.intake.drain()
    assert len(discord.sent_to(CHANNEL)) == 2 and len(discord.sent_to(DM)) == 2
    assert len(gemini.requests) == 4
    assert (tmp_path / "discord-catch-up.json").exists()  # beside the database


async def test_a_429_on_send_is_waited_out_and_the_picture_sent_once(rig: Rig) -> None:
    rig.discord.rate_limit_next("POST", f"/channels/{DM}/messages", retry_after=0.3)
    await rig.say(DM, ALICE, "draw a cat")
    assert rig.discord.rate_limited == [f"/api/v10/channels/{DM}/messages"]
    [answer] = rig.discord.sent_to(DM)
    assert picture_of(answer)


async def test_a_gateway_reconnect_request_resumes_and_events_keep_coming(rig: Rig) -> None:
    await rig.discord.request_reconnect()
    await rig.discord.wait_for(lambda: rig.discord.resumes == 1)
    await rig.say(DM, ALICE, "draw a cat")
    assert len(rig.discord.identifies) == 1
