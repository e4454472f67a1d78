"""The moderation hook: matching as people write (case, width, Chinese), patterns under a
time limit, and a refusal end to end before any model call or stored turn."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.core.config import Settings, SettingsError
from bot.core.events import ChatKey
from bot.policy.moderation import BadRule, Moderation, compile_rule
from tests.fakes.gemini import FakeGemini
from tests.harness import BOB, Chat, RecordingPlatform, photo, running_bot, settings_for

PRIVATE = ChatKey("telegram", "42")
GROUP = ChatKey("telegram", "-1001")


def operator(*terms: str) -> Moderation:
    return Moderation([compile_rule(t, source="operator") for t in terms])


@pytest.mark.parametrize(("term", "prompt"), [
    ("gore", "make it GORE"),
    ("gore", "ＭＡＫＥ ＩＴ ＧＯＲＥ"),  # full-width letters, as Chinese keyboards type them
    ("ｇｏｒｅ", "a gore scene"),
    ("gore", "go\u200bre everywhere"),  # a zero-width space hidden inside the word
    ("Straße", "STRASSE at night"),  # full case folding
    ("blood bath", "a Blood   Bath"),
    ("血腥", "画一个血腥的场景"),  # no spaces between Chinese words: anywhere
    ("血腥", "画一个血腥"),
    ("gore", "画一个gore场景"),  # an English word inside Chinese text
    ("ｶﾀｶﾅ", "カタカナの絵"),  # half-width katakana is the same word
    ("re:nud(e|ity)", "full NUDITY please"),
])
def test_blocked_terms_match_whatever_the_case_width_or_script(term: str, prompt: str) -> None:
    rule = operator(term).first_match(prompt)
    assert rule is not None and rule.written == term


@pytest.mark.parametrize(("term", "prompt"), [
    ("ass", "the class photo"),  # whole words where words have spaces
    ("gore", "a gored bull"),
    ("血腥", "画一个可爱的场景"),
    ("re:nud(e|ity)", "a nudge"),
])
def test_innocent_prompts_pass(term: str, prompt: str) -> None:
    assert operator(term).first_match(prompt) is None


def test_a_chats_terms_add_to_the_operators() -> None:
    moderation = operator("gore")
    assert moderation.first_match("a clown") is None
    rule = moderation.first_match("a clown", ["clown", "re:(?i)jest"])
    assert rule is not None and rule.source == "chat"
    assert moderation.first_match("a jester", ["re:jest"]) is not None


@pytest.mark.parametrize(("written", "why"), [
    ("re:(unclosed", "not a valid regular expression"),
    ("re:.*", "empty prompt"),
    ("re:a?", "empty prompt"),
    ("re:" + "x" * 1001, "longer than 1000"),
    ("   ", "empty"),
])
def test_unusable_rules_are_refused_at_load(written: str, why: str) -> None:
    with pytest.raises(BadRule, match=why):
        compile_rule(written, source="operator")


def test_a_catastrophic_pattern_is_stopped_and_the_others_still_apply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    moderation = Moderation([compile_rule(r"(a|aa)+$", source="operator", pattern=True),
                             compile_rule("bomb", source="operator")])
    evil = "a" * 4000 + "!"
    assert moderation.first_match(evil) is None
    assert "took too long" in caplog.text and "(a|aa)+$" in caplog.text
    assert moderation.first_match(evil + " bomb") is not None


def test_a_chat_term_that_cannot_be_used_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert operator().first_match("anything", ["re:(", "re:.*"]) is None
    assert "ignoring the chat's blocked term" in caplog.text


def test_the_operators_lists_come_from_settings(tmp_path: Path) -> None:
    patterns = tmp_path / "patterns.txt"
    patterns.write_text("# weapons\n\\bgun(s)?\\b\n\n炸弹\n", encoding="utf-8")
    moderation = Moderation.from_settings(Settings(
        chatbrush_blocked_terms="gore，血腥、spam", chatbrush_blocked_patterns=str(patterns)))
    assert [r.written for r in moderation.rules] == ["gore", "血腥", "spam", r"\bgun(s)?\b",
                                                     "炸弹"]
    patterns.write_text("fine\n(broken\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"CHATBRUSH_BLOCKED_PATTERNS: .* line 2 is not"):
        Moderation.from_settings(Settings(chatbrush_blocked_patterns=str(patterns)))
    with pytest.raises(SettingsError, match="cannot read"):
        Moderation.from_settings(Settings(chatbrush_blocked_patterns=str(tmp_path / "no")))
    with pytest.raises(SettingsError, match="CHATBRUSH_BLOCKED_TERMS: 're:\\(' is not"):
        Moderation.from_settings(Settings(chatbrush_blocked_terms="re:("))


# ---------------------------------------------------------------------- end to end
async def test_a_blocked_prompt_is_refused_before_the_model_and_before_any_turn(
    tmp_path: Path, fake: FakeGemini, caplog: pytest.LogCaptureFixture,
) -> None:
    platform = RecordingPlatform()
    caplog.set_level(logging.INFO, logger="bot.policy.moderation")
    settings = settings_for(tmp_path, fake, chatbrush_blocked_terms="血腥")
    async with running_bot(settings, platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        refused = await group.say("画一个血腥的场景", photo(), sender=BOB)
        assert "can't take that request" in (refused.text or "")
        assert "血腥" not in (refused.text or "")  # the rule is not shown
        assert fake.requests == []
        assert (await bot.store.stats()).turns == 0
        assert (await bot.store.stats()).threads == 0
        assert f"refused a prompt from user {BOB.id} in telegram:-1001" in caplog.text
        assert "operator rule '血腥'" in caplog.text
        fine = await group.say("画一个可爱的场景", photo(), sender=BOB)
        assert fine.kind == "images"


async def test_a_chats_own_terms_are_refused_too(tmp_path: Path, fake: FakeGemini) -> None:
    platform = RecordingPlatform()
    async with running_bot(settings_for(tmp_path, fake), platform) as bot:
        group = Chat(bot, platform, GROUP, private=False)
        group.channel.admins.add(BOB.id)
        await group.say("/settings blocked_terms clown, 小丑", sender=BOB)
        refused = await group.say("add a CLOWN")
        assert "can't take that request" in (refused.text or "")
        assert "can't take that request" in ((await group.say("画一个小丑")).text or "")
        assert fake.requests == []
        elsewhere = Chat(bot, platform, ChatKey("telegram", "-2002"), private=False)
        assert (await elsewhere.say("add a clown")).kind == "images"
