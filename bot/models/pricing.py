"""What a model call cost, in US dollars, from the usage the service reported.

Money is kept as whole **micro-dollars** (millionths of a US dollar) everywhere — in the
store, in budgets, in metrics — because a price per million tokens times a token count
*is* a number of micro-dollars, and integer sums never drift.

Default prices are Google's list prices for the Gemini Developer API (paid tier,
standard, not batch), from <https://ai.google.dev/gemini-api/docs/pricing> as quoted by
Google's pricing page and its public mirrors (checked for this table):

- ``gemini-2.5-flash-image``: input (text and images) $0.30 per million tokens; image
  output $30 per million tokens (a picture up to 1024×1024 is 1290 tokens: $0.039);
  text output $2.50 per million.
- ``gemini-3-pro-image-preview``: input $2.00 per million; text and thinking output $12
  per million; image output $120 per million (a 1K or 2K picture is 1120 tokens: $0.134;
  a 4K picture 2000 tokens: $0.24).
- ``gemini-3.1-flash-image-preview``: input $0.50 per million; text and thinking output
  $3 per million; image output $60 per million (0.5K $0.045, 1K $0.067, 2K $0.101,
  4K $0.151 per picture).

Image output is priced apart from text because it costs ten times as much or more. When
an answer reports no image tokens (some relays do not break usage down), each picture is
charged at the model's per-picture price for the requested image size instead.

Operators override or add prices with ``CHATBRUSH_PRICES``: the path of a TOML or JSON
file, or inline JSON. Each key is a model name; each value gives any of ``input``,
``text_output`` and ``image_output`` (US dollars per million tokens) and ``per_image``
(US dollars per picture, by image size, used when no image tokens are reported). An entry
for a model with a default price replaces only the fields it gives.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.config import Settings, SettingsError
from bot.kit.formatting import MICROS_PER_USD
from bot.models.base import Usage

log = logging.getLogger(__name__)

#: the size a model draws at when none is asked for
DEFAULT_IMAGE_SIZE = "1K"
#: input tokens assumed for a request when estimating before the call (a long thread
#: with several pictures stays below this; the context policy bounds every request)
ESTIMATED_INPUT_TOKENS = 20_000
#: text and thinking tokens assumed per answer when estimating
ESTIMATED_TEXT_TOKENS = 2_000


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens, and per picture by image size."""

    input: float
    text_output: float
    image_output: float
    per_image: Mapping[str, float] = field(default_factory=dict)

    def picture(self, image_size: str | None) -> float:
        """The price of one picture at ``image_size`` (the dearest size if unknown)."""
        found = self.per_image.get((image_size or DEFAULT_IMAGE_SIZE).upper())
        return found if found is not None else max(self.per_image.values(), default=0.0)


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gemini-2.5-flash-image": ModelPrice(
        input=0.30, text_output=2.50, image_output=30.0, per_image={"1K": 0.039},
    ),
    "gemini-3-pro-image-preview": ModelPrice(
        input=2.00, text_output=12.0, image_output=120.0,
        per_image={"1K": 0.134, "2K": 0.134, "4K": 0.24},
    ),
    "gemini-3.1-flash-image-preview": ModelPrice(
        input=0.50, text_output=3.0, image_output=60.0,
        per_image={"0.5K": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
    ),
    # the offline demo model costs nothing
    "demo": ModelPrice(input=0.0, text_output=0.0, image_output=0.0),
}
#: older names of the same models
ALIASES: Mapping[str, str] = {
    "gemini-2.5-flash-image-preview": "gemini-2.5-flash-image",
    "gemini-3-pro-image": "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image": "gemini-3.1-flash-image-preview",
}


def price_key(model: str) -> str:
    """The table's name for a model as a provider spells it:
    ``openai:google/gemini-2.5-flash-image:free`` → ``gemini-2.5-flash-image``."""
    name = model.strip().lower()
    for prefix in ("gemini:", "openai:", "models/"):
        name = name.removeprefix(prefix)
    name = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return ALIASES.get(name, name)


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float | None = Field(None, ge=0, le=10_000)
    text_output: float | None = Field(None, ge=0, le=10_000)
    image_output: float | None = Field(None, ge=0, le=10_000)
    per_image: dict[str, float] | None = None


class PriceTable:
    """Prices by model, the operator's over the defaults; see the module docstring."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """The defaults with ``CHATBRUSH_PRICES`` applied; a bad value is a
        :class:`SettingsError` naming the setting."""
        raw = settings.chatbrush_prices
        if not raw or not raw.strip():
            return cls()
        return cls(merge(DEFAULT_PRICES, parse_overrides(raw)))

    def price(self, model: str) -> ModelPrice:
        """The model's price; a model nobody priced is charged like the dearest one we
        know, so that budgets still hold (and the operator is told once)."""
        key = price_key(model)
        found = self._prices.get(key)
        if found is not None:
            return found
        if key not in self._warned:
            self._warned.add(key)
            log.warning("no price for model %r: charging it like the dearest known model; "
                        "set its price in CHATBRUSH_PRICES", model)
        return max(self._prices.values(), key=lambda p: (p.image_output, p.input))

    def cost(self, model: str, usage: Usage, *, images: int = 0,
             image_size: str | None = None) -> int:
        """Micro-dollars for one call: input, text and thinking output, and image output
        (per token, or per picture when the answer reports no image tokens)."""
        price = self.price(model)
        text_tokens = max(0, usage.output_tokens - usage.image_output_tokens)
        micros = (usage.prompt_tokens * price.input + text_tokens * price.text_output
                  + usage.image_output_tokens * price.image_output)
        if usage.image_output_tokens == 0 and images > 0:
            micros += images * price.picture(image_size) * MICROS_PER_USD
        return max(0, round(micros))

    def estimate(self, model: str, *, image_size: str | None = None) -> int:
        """A generous price of one call before it is made (what a budget reserves)."""
        price = self.price(model)
        picture = price.picture(image_size) * MICROS_PER_USD
        return math.ceil(ESTIMATED_INPUT_TOKENS * price.input
                         + ESTIMATED_TEXT_TOKENS * price.text_output + picture)


def parse_overrides(raw: str) -> dict[str, _PriceEntry]:
    """``CHATBRUSH_PRICES``: inline JSON, or the path of a ``.toml`` or ``.json`` file."""
    text = raw.strip()
    try:
        if text.startswith(("{", "[")):
            data: Any = json.loads(text)
        else:
            path = Path(text).expanduser()
            content = path.read_text(encoding="utf-8")
            data = (tomllib.loads(content) if path.suffix.lower() == ".toml"
                    else json.loads(content))
    except OSError as exc:
        raise SettingsError(
            f"invalid setting CHATBRUSH_PRICES: cannot read {text}: {exc.strerror or exc}"
        ) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"invalid setting CHATBRUSH_PRICES: not valid TOML or JSON "
                            f"({exc})") from None
    if not isinstance(data, dict):
        raise SettingsError("invalid setting CHATBRUSH_PRICES: expected a table of models")
    entries: dict[str, _PriceEntry] = {}
    for name, value in data.items():
        try:
            entry = _PriceEntry.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise SettingsError(
                f"invalid setting CHATBRUSH_PRICES: {name}{'.' + where if where else ''}: "
                f"{first.get('msg', 'invalid value')}"
            ) from None
        for size, amount in (entry.per_image or {}).items():
            if not 0 <= amount <= 100:
                raise SettingsError(f"invalid setting CHATBRUSH_PRICES: {name}.per_image."
                                    f"{size}: must be between 0 and 100 dollars")
        entries[price_key(str(name))] = entry
    return entries


def merge(defaults: Mapping[str, ModelPrice], overrides: Mapping[str, _PriceEntry]
          ) -> dict[str, ModelPrice]:
    prices = dict(defaults)
    for key, entry in overrides.items():
        base = prices.get(key)
        given = {name: value for name, value in entry.model_dump().items() if value is not None}
        if "per_image" in given:
            given["per_image"] = {k.upper(): v for k, v in given["per_image"].items()}
        if base is not None:
            prices[key] = replace(base, **given)
            continue
        missing = [n for n in ("input", "text_output", "image_output") if n not in given]
        if missing:
            raise SettingsError(
                f"invalid setting CHATBRUSH_PRICES: {key} has no default price, so it needs "
                f"{', '.join(missing)}"
            )
        prices[key] = ModelPrice(**given)
    return prices


def to_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)
