"""Key pools (GEMINI_API_KEYS) against the fake Gemini, over real httpx on loopback.

What an operator would notice: calls spread over the keys; a key out of quota rests for
the time the service named while another key answers the same call at once; a refused
key is taken out with one masked log line; when every key rests, a call waits for the
first within its budget or says the usual "too many requests"; /stats shows each key's
calls and failures, masked; no key is ever in a log line or a message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.config import Settings
from bot.core.events import ChatKey, Sender
from bot.core.failures import FailureKind
from bot.models.base import Content, GenerateRequest, ModelError, Part
from bot.models.gemini import GeminiModel
from bot.models.http_policy import CallPolicy
from bot.models.key_pool import KeyPool, mask
from tests.fakes.gemini import FakeGemini
from tests.harness import Chat, RecordingPlatform, photo, running_bot, settings_for

KEY_A = "AIzaSyA-first-key-0000000000000000000"
KEY_B = "AIzaSyB-second-key-111111111111111111"
KEY_C = "AIzaSyC-third-key-2222222222222222222"
OPERATOR = Sender("99", "Op")


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY_A, api_keys=(KEY_B, KEY_C)) as server:
        yield server


def pooled(fake: FakeGemini, *keys: str, sleep: SleepRecorder | None = None,
           **policy: Any) -> GeminiModel:
    limits: dict[str, Any] = {"jitter": 0.0, "backoff_base": 0.01, **policy}
    return GeminiModel(api_keys=keys, model="gemini-2.5-flash-image", base_url=fake.base_url,
                       policy=CallPolicy(**limits), sleep=sleep or SleepRecorder())


def ask(text: str = "a fox") -> GenerateRequest:
    return GenerateRequest([Content("user", (Part(text=text),))])


def keys_used(fake: FakeGemini) -> list[str | None]:
    return [r.api_key for r in fake.requests]


def test_settings_take_the_union_of_both_key_settings() -> None:
    settings = Settings(gemini_api_key=KEY_A, gemini_api_keys=f"{KEY_B}, {KEY_A},{KEY_C}")
    assert settings.gemini_keys() == (KEY_A, KEY_B, KEY_C)
    assert Settings(gemini_api_keys=KEY_B).gemini_keys() == (KEY_B,)
    assert KEY_B not in repr(settings)


async def test_calls_spread_across_the_keys(fake: FakeGemini) -> None:
    model = pooled(fake, KEY_A, KEY_B, KEY_C)
    for _ in range(6):
        await model.generate(ask())
    assert sorted(keys_used(fake)) == sorted([KEY_A, KEY_B, KEY_C] * 2)
    await model.aclose()


async def test_a_key_out_of_quota_rests_while_another_answers_at_once(
    fake: FakeGemini,
) -> None:
    sleeps = SleepRecorder()
    model = pooled(fake, KEY_A, KEY_B, sleep=sleeps, max_attempts=1)
    fake.exhaust_key(KEY_A, retry_delay="42s")
    result = await model.generate(ask())  # one attempt allowed: the switch is not one
    assert result.images
    assert keys_used(fake) == [KEY_A, KEY_B]
    assert sleeps.calls == []  # not a wait: the other key took the call at once
    fake.requests.clear()
    for _ in range(3):
        await model.generate(ask())
    assert keys_used(fake) == [KEY_B] * 3  # A rests for the 42 s the service named
    [a, b] = model.key_pool.report()
    assert (a.calls, a.failures, a.resting) == (1, 1, True)
    assert (b.calls, b.failures, b.resting) == (4, 0, False)
    await model.aclose()


async def test_a_refused_key_is_taken_out_with_one_masked_log_line(
    fake: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = pooled(fake, KEY_A, KEY_B, KEY_C)
    fake.refuse_key(KEY_A, status=403)  # API_KEY_INVALID, the key echoed in DebugInfo
    fake.refuse_key(KEY_C, status=403, reason=None)  # "reported as leaked", no reason
    for _ in range(4):
        assert (await model.generate(ask())).images
    assert keys_used(fake).count(KEY_A) == 1
    assert keys_used(fake).count(KEY_C) == 1
    assert keys_used(fake).count(KEY_B) == 4
    out = [r.getMessage() for r in caplog.records if "taken out" in r.getMessage()]
    assert len(out) == 2
    assert f"key 1 ({mask(KEY_A)})" in out[0]
    everything = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert KEY_A not in everything and KEY_C not in everything
    await model.aclose()


@pytest.mark.parametrize("message", [
    "You do not have permission to access the File abc123 or it may not exist.",
    "Forbidden: this relay does not serve your region.",
])
async def test_a_403_that_names_no_key_takes_none_out(fake: FakeGemini, message: str) -> None:
    model = pooled(fake, KEY_A, KEY_B, max_attempts=1)
    fake.enqueue_error(403, message)
    with pytest.raises(ModelError):
        await model.generate(ask())
    assert not any(k.taken_out for k in model.key_pool.report())
    await model.aclose()


async def test_the_last_live_key_is_never_taken_out(fake: FakeGemini) -> None:
    model = pooled(fake, KEY_A)
    fake.refuse_key(KEY_A)
    for _ in range(2):
        with pytest.raises(ModelError) as caught:
            await model.generate(ask())
        assert caught.value.kind is FailureKind.AUTH
        assert KEY_A not in caught.value.detail
    assert len(fake.requests) == 2  # each call still tries it: the operator may fix it
    await model.aclose()


async def test_every_key_resting_waits_for_the_first_within_the_budget(
    fake: FakeGemini,
) -> None:
    sleeps = SleepRecorder()
    model = pooled(fake, KEY_A, KEY_B, sleep=sleeps, budget=60.0)
    fake.exhaust_key(KEY_A, retry_delay="20s")
    fake.exhaust_key(KEY_B, retry_delay="5s")
    with pytest.raises(ModelError):
        # both rest; B's 5 s fit the budget, but the fake keeps refusing it
        await model.generate(ask())
    assert sleeps.calls and sleeps.calls[0] == pytest.approx(5.0, abs=0.5)
    fake.restore_key(KEY_B)
    sleeps.calls.clear()
    fake.requests.clear()
    assert (await model.generate(ask())).images  # waits for B (fake sleep), then B answers
    assert keys_used(fake) == [KEY_B]
    await model.aclose()


async def test_every_key_resting_past_the_budget_is_the_usual_rate_limit_message(
    fake: FakeGemini,
) -> None:
    model = pooled(fake, KEY_A, KEY_B, budget=10.0)
    fake.exhaust_key(KEY_A, retry_delay="600s")
    fake.exhaust_key(KEY_B, retry_delay="900s")
    with pytest.raises(ModelError) as first:
        await model.generate(ask())
    assert first.value.kind is FailureKind.RATE_LIMITED
    assert "too many requests" in first.value.user_message
    fake.requests.clear()
    with pytest.raises(ModelError) as second:  # no request at all: every key rests
        await model.generate(ask())
    assert second.value.kind is FailureKind.RATE_LIMITED
    assert "about 10 minutes" in second.value.user_message
    assert fake.requests == []
    await model.aclose()


def test_a_pool_never_shows_its_keys() -> None:
    pool = KeyPool([KEY_A, KEY_B])
    assert KEY_A not in repr(pool) and KEY_A[:8] not in repr(pool)
    assert pool.redact(f"bad key {KEY_B}!") == "bad key [redacted]!"
    assert [r.label for r in pool.report()] == ["key 1 (AIza…)", "key 2 (AIza…)"]


async def test_stats_show_each_keys_calls_and_failures_masked(
    tmp_path: Path, fake: FakeGemini
) -> None:
    platform = RecordingPlatform()
    settings = settings_for(tmp_path, fake, gemini_api_key=None,
                            gemini_api_keys=f"{KEY_A},{KEY_B}",
                            chatbrush_admins="telegram:99")
    fake.exhaust_key(KEY_A, retry_delay="30s")
    async with running_bot(settings, platform) as bot:
        chat = Chat(bot, platform, ChatKey("telegram", "-1001"), private=False)
        for prompt in ("one", "two"):
            await chat.say(prompt, photo())
        stats = (await chat.say("/stats", sender=OPERATOR)).text or ""
    assert "key 1 (AIza…): 1 call, 1 failed — resting: its quota is spent" in stats
    assert "key 2 (AIza…): 2 calls, 0 failed" in stats
    assert KEY_A not in stats and KEY_B not in stats
