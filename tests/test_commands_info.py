"""/usage and /stats: money and calls as users and operators read them, end to end with the
fake Gemini service (its answers carry usageMetadata like the live service's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.core.events import ChatKey, Sender
from bot.kit import metrics
from tests.fakes.gemini import FakeGemini
from tests.harness import ANN, BOB, Chat, RecordingPlatform, photo, running_bot, settings_for

OPERATOR = Sender("99", "Op")


def spent_on(model: str) -> float:
    """The cost counter as Prometheus scrapes it."""
    return REGISTRY.get_sample_value("chatbrush_model_cost_usd_total", {"model": model}) or 0.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server


async def test_stats_show_calls_failures_latency_cost_and_the_busiest_chats(
    tmp_path: Path, fake: FakeGemini
) -> None:
    platform = RecordingPlatform()
    settings = settings_for(tmp_path, fake, chatbrush_admins="telegram:99")
    cost_before = spent_on("gemini-2.5-flash-image")
    async with running_bot(settings, platform) as bot:
        busy = Chat(bot, platform, ChatKey("telegram", "-1001"), private=False)
        quiet = Chat(bot, platform, ChatKey("telegram", "-1002"), private=False)
        for prompt in ("one", "two"):
            await busy.say(prompt, photo())
        fake.enqueue_block("SAFETY")
        await quiet.say("forbidden", photo(), sender=BOB)
        stats = (await quiet.say("/stats", sender=OPERATOR)).text or ""
    assert "Today (UTC): 3 calls, $0.08" in stats
    assert "• failed: refused 1" in stats
    assert "• model latency: p50" in stats
    assert "• telegram:-1001: 2 calls, $0.08" in stats
    assert "This month: 3 calls" in stats
    spent = spent_on("gemini-2.5-flash-image") - cost_before
    assert 0.07 < spent < 0.09
    assert b"chatbrush_model_cost_usd_total" in metrics.render()[0]


async def test_usage_is_said_in_the_chats_language(tmp_path: Path, fake: FakeGemini) -> None:
    platform = RecordingPlatform()
    async with running_bot(settings_for(tmp_path, fake), platform) as bot:
        dm = Chat(bot, platform, ChatKey("telegram", "42"), private=True)
        await dm.say("watercolor", photo())
        assert "已开始" not in ((await dm.say("/new")).text or "")
        await dm.say("/settings language zh")
        usage = (await dm.say("/usage")).text or ""
        assert "今天 (UTC):" in usage and "你在本群：$0.04，1 次模型调用，1 张图片" in usage
        platform.languages[ANN.id] = "en"  # the chat's choice wins over the person's app
        assert (await dm.say("/new")).text == "已开始新对话。发一张照片，或者描述一张图片。"
