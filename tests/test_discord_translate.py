"""Discord's registration with the core: its settings group, allow-list and /help tips."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.discord.platform import DISCORD
from adapters.discord.settings import DiscordSettings
from bot.core.config import load_settings
from bot.core.events import ChatKey, Incoming, Sender
from bot.core.platforms import platform_info
from bot.kit.i18n import _, speaking


def event(*, chat: str = "1", user: str = "2", guild: str = "") -> Incoming:
    return Incoming(chat=ChatKey("discord", chat), message_id="m", sender=Sender(user),
                    platform_data={"guild": guild})


def test_discord_is_registered_through_its_entry_point() -> None:
    assert platform_info("discord") is DISCORD
    assert DISCORD.settings is DiscordSettings


def test_help_tips_share_the_translated_sentences_of_the_other_platforms() -> None:
    """Not marked for extraction (the catalog under bot/ stays as it is), so each tip must
    be a sentence another platform marks, which the Chinese catalog translates."""
    with speaking("zh_Hans"):
        translated = [_(tip) for tip in DISCORD.help_tips]
    assert all(t != tip for t, tip in zip(translated, DISCORD.help_tips, strict=True))


def test_a_server_on_the_allow_list_admits_all_its_channels() -> None:
    settings = load_settings(discord_bot_token="t", discord_allowed_servers="10, 11",
                             discord_allowed_users="7")
    allow = DiscordSettings.of(settings).allow_list()
    assert not allow.open
    assert allow.allows(event(guild="11", chat="99"))
    assert allow.allows(event(user="7"))  # a listed person, anywhere (a DM)
    assert not allow.allows(event(guild="12"))


def test_no_lists_means_everywhere_and_the_token_turns_it_on() -> None:
    group = DiscordSettings.of(load_settings(discord_bot_token="t"))
    assert group.allow_list().open and group.configured()
    assert not DiscordSettings.of(load_settings()).configured()
    assert not group.discord_message_content  # the privileged intent is asked only if set


def test_the_gateway_must_be_a_websocket_url() -> None:
    with pytest.raises(ValidationError, match="DISCORD_GATEWAY_URL"):
        DiscordSettings(discord_gateway_url="https://gateway.discord.gg")
    group = DiscordSettings(discord_api_base="http://127.0.0.1:1/api/v10/")
    assert group.discord_api_base == "http://127.0.0.1:1/api/v10"
