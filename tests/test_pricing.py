"""Prices: the cost of a call from the usage a service recorded, and the operator's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core.config import Settings, SettingsError
from bot.kit.formatting import dollars
from bot.models.base import Usage
from bot.models.gemini import parse_usage
from bot.models.pricing import PriceTable, price_key

FIXTURES = Path(__file__).parent / "fixtures"


def recorded_usage(name: str) -> Usage:
    return parse_usage(json.loads((FIXTURES / name).read_text()))


def table(prices: str | None = None) -> PriceTable:
    return PriceTable.from_settings(Settings(chatbrush_prices=prices))


def test_a_recorded_gemini_2_5_flash_image_answer_costs_four_cents() -> None:
    usage = recorded_usage("gemini_2.5_flash_image_text_plus_image.json")
    # 4 input tokens at $0.30/M, 8 text tokens at $2.50/M, 1290 image tokens at $30/M
    assert table().cost("gemini-2.5-flash-image", usage, images=1) == round(
        4 * 0.30 + 8 * 2.50 + 1290 * 30.0
    )
    assert dollars(table().cost("gemini-2.5-flash-image", usage, images=1)) == "$0.04"


def test_a_recorded_gemini_3_pro_image_answer_prices_thinking_as_text() -> None:
    usage = recorded_usage("gemini_3_pro_image_preview_usage.json")
    assert (usage.image_output_tokens, usage.thought_tokens) == (1120, 155)
    # 5 input tokens at $2/M, 155 thinking tokens at $12/M, 1120 image tokens at $120/M
    cost = table().cost("gemini-3-pro-image-preview", usage, images=1)
    assert cost == 5 * 2 + 155 * 12 + 1120 * 120 == 136_270
    assert dollars(cost) == "$0.14"


def test_without_image_tokens_a_picture_is_charged_by_its_size() -> None:
    relay = Usage(prompt_tokens=1000, output_tokens=1300)  # no breakdown by modality
    prices = table()
    small = prices.cost("openai:google/gemini-3-pro-image-preview", relay, images=1,
                        image_size="2K")
    large = prices.cost("openai:google/gemini-3-pro-image-preview", relay, images=1,
                        image_size="4K")
    assert large - small == 240_000 - 134_000
    assert prices.cost("gemini-3-pro-image-preview", relay, images=0) == 1000 * 2 + 1300 * 12


@pytest.mark.parametrize(("written", "key"), [
    ("openai:google/gemini-2.5-flash-image-preview:free", "gemini-2.5-flash-image"),
    ("gemini:models/gemini-3-pro-image-preview", "gemini-3-pro-image-preview"),
    ("google/gemini-3-pro-image", "gemini-3-pro-image-preview"),
    ("Gemini-3.1-Flash-Image-Preview", "gemini-3.1-flash-image-preview"),
])
def test_provider_spellings_find_the_same_price(written: str, key: str) -> None:
    assert price_key(written) == key


def test_an_unpriced_model_is_charged_like_the_dearest(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    usage = Usage(prompt_tokens=10, output_tokens=1120, image_output_tokens=1120)
    prices = table()
    assert prices.cost("someone/new-image-model", usage, images=1) == prices.cost(
        "gemini-3-pro-image-preview", usage, images=1)
    prices.cost("someone/new-image-model", usage, images=1)
    assert sum("CHATBRUSH_PRICES" in r.getMessage() for r in caplog.records) == 1


def test_the_operator_overrides_a_field_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[gemini-2-5-x]\ninput = 1\ntext_output = 2\nimage_output = 3\n'
                    '["gemini-3-pro-image-preview"]\nimage_output = 60.0\n'
                    'per_image = { "4k" = 0.12 }\n')
    prices = table(str(path))
    pro = prices.price("gemini-3-pro-image-preview")
    assert (pro.input, pro.image_output, pro.picture("4K")) == (2.0, 60.0, 0.12)
    assert prices.price("gemini-2-5-x").text_output == 2


def test_inline_json_adds_a_model() -> None:
    prices = table('{"my-relay-model": {"input": 0.1, "text_output": 0.2, '
                   '"image_output": 10, "per_image": {"1K": 0.01}}}')
    assert prices.cost("openai:vendor/my-relay-model", Usage(output_tokens=100), images=1
                       ) == 100 * 0.2 + 10_000


@pytest.mark.parametrize(("value", "says"), [
    ('{"m": {"input": -1, "text_output": 1, "image_output": 1}}', "m.input"),
    ('{"m": {"input": 1}}', "needs text_output, image_output"),
    ('{"gemini-2.5-flash-image": {"inpt": 1}}', "inpt"),
    ('{"m": ', "not valid TOML or JSON"),
    ("/nowhere/prices.toml", "cannot read /nowhere/prices.toml"),
    ('["a list"]', "expected a table"),
])
def test_a_bad_price_table_stops_the_bot_with_one_line(value: str, says: str) -> None:
    with pytest.raises(SettingsError, match="CHATBRUSH_PRICES") as raised:
        table(value)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_an_estimate_covers_a_real_call() -> None:
    prices = table()
    usage = recorded_usage("gemini_3_pro_image_preview_usage.json")
    assert prices.estimate("gemini-3-pro-image-preview") >= prices.cost(
        "gemini-3-pro-image-preview", usage, images=1)
    assert prices.estimate("gemini-3-pro-image-preview", image_size="4K") > prices.estimate(
        "gemini-3-pro-image-preview", image_size="1K")
    assert prices.estimate("demo") == 0
