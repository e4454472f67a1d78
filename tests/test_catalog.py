"""ModelCatalog: the operator's list of models, reached through the fake services.

What an operator or a chat would notice: the list says exactly which models may be used
and through which service, a wrong entry or a missing key stops the bot at start-up with
one line, a name that is not allowed says what is, and each model talks to its own
service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app.runtime import choose_model
from bot.core.config import Settings, SettingsError, load_settings
from bot.models import http_policy as hp
from bot.models.base import Content, GenerateRequest, ModelError, Part
from bot.models.catalog import ModelCatalog, ModelEntry, UnknownModel
from bot.models.demo import DemoModel
from bot.models.gemini import GeminiModel
from bot.models.openai_compat import OpenAICompatModel
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai_compat import FakeOpenAI

FLASH = "gemini-2.5-flash-image"
PRO3 = "gemini-3-pro-image-preview"
RELAYED = "google/gemini-2.5-flash-image"


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"gemini_api_key": "g-key", "openai_api_key": "o-key"}
    base.update(values)
    return load_settings(**base)


def ask(text: str = "a lighthouse") -> GenerateRequest:
    return GenerateRequest((Content("user", (Part(text=text),)),))


@pytest.fixture
async def services() -> AsyncIterator[tuple[FakeGemini, FakeOpenAI]]:
    async with FakeGemini() as google, FakeOpenAI() as relay:
        yield google, relay


def both(google: FakeGemini, relay: FakeOpenAI, **values: Any) -> Settings:
    return load_settings(
        gemini_api_key=google.api_key,
        gemini_base_url=google.base_url,
        gemini_max_attempts=1,
        openai_api_key=relay.api_key,
        openai_base_url=relay.base_url,
        **values,
    )


# ------------------------------------------------------------------------------- the list


def test_by_default_only_the_default_model_is_allowed() -> None:
    catalog = ModelCatalog.from_settings(settings())
    assert catalog.default == FLASH
    assert catalog.names() == (FLASH,)


def test_the_openai_provider_makes_openai_model_the_default() -> None:
    catalog = ModelCatalog.from_settings(settings(chatbrush_provider="openai"))
    assert catalog.default == f"openai:{RELAYED}"
    assert catalog.entry(catalog.default) == ModelEntry("openai", RELAYED)


def test_the_list_keeps_the_default_first_and_each_model_once() -> None:
    catalog = ModelCatalog.from_settings(
        settings(
            chatbrush_models=f"{PRO3}, openai:{RELAYED}, gemini:{FLASH}, models/{PRO3},"
            "openai:google/gemini-2.5-flash-image-preview:free"
        )
    )
    assert catalog.names() == (
        FLASH,
        PRO3,
        f"openai:{RELAYED}",
        "openai:google/gemini-2.5-flash-image-preview:free",
    )
    assert catalog.entry("openai:google/gemini-2.5-flash-image-preview:free").model == (
        "google/gemini-2.5-flash-image-preview:free"
    )


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("azure:gpt-image-1", "unknown provider 'azure'"),
        (RELAYED, f"write openai:{RELAYED}"),
        ("openai:", "names no model"),
    ],
)
def test_a_wrong_entry_stops_start_up_with_one_line(entry: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        ModelCatalog.from_settings(settings(chatbrush_models=entry))
    message = str(info.value)
    assert "CHATBRUSH_MODELS" in message and words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"gemini_model": " "}, "GEMINI_MODEL"),
        ({"chatbrush_provider": "openai", "openai_model": ""}, "OPENAI_MODEL"),
    ],
)
def test_an_empty_default_model_stops_start_up(values: dict[str, Any], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        ModelCatalog.from_settings(settings(**values))
    assert str(info.value) == f"invalid setting {variable}: it names no model"


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"gemini_api_key": None}, "GEMINI_API_KEY"),
        ({"openai_api_key": None, "chatbrush_models": f"openai:{RELAYED}"}, "OPENAI_API_KEY"),
        ({"openai_api_key": None, "chatbrush_provider": "openai"}, "OPENAI_API_KEY"),
    ],
)
def test_a_missing_key_stops_start_up(values: dict[str, Any], missing: str) -> None:
    with pytest.raises(SettingsError) as info:
        ModelCatalog.from_settings(settings(**values))
    assert missing in str(info.value)


def test_only_the_keys_of_the_providers_in_use_are_needed() -> None:
    catalog = ModelCatalog.from_settings(settings(openai_api_key=None))
    assert catalog.names() == (FLASH,)
    relayed = ModelCatalog.from_settings(settings(gemini_api_key=None, chatbrush_provider="openai"))
    assert relayed.names() == (f"openai:{RELAYED}",)


async def test_a_name_that_is_not_allowed_says_which_are() -> None:
    catalog = ModelCatalog.from_settings(settings(chatbrush_models=PRO3))
    for name in ("gemini-1.0-pro", "openai:gemini-3-pro-image-preview", "azure:x", ""):
        with pytest.raises(UnknownModel) as info:
            catalog.get(name)
        assert f"allowed: {FLASH}, {PRO3}" in str(info.value)
        assert isinstance(info.value, LookupError)
    await catalog.aclose()


# ------------------------------------------------------------------------------ the models


async def test_each_model_reaches_its_own_service(
    services: tuple[FakeGemini, FakeOpenAI],
) -> None:
    google, relay = services
    catalog = ModelCatalog.from_settings(
        both(google, relay, chatbrush_models=f"{PRO3}, openai:{RELAYED}")
    )
    try:
        native = catalog.get(PRO3)
        relayed = catalog.get(f"openai:{RELAYED}")
        assert isinstance(native, GeminiModel) and isinstance(relayed, OpenAICompatModel)
        assert (native.name, relayed.name) == (PRO3, RELAYED)
        assert (await native.generate(ask())).images
        assert (await relayed.generate(ask())).images
    finally:
        await catalog.aclose()
    assert [r.model for r in google.requests] == [PRO3]
    assert [r.json["model"] for r in relay.requests] == [RELAYED]


async def test_one_client_per_model_made_on_first_use() -> None:
    catalog = ModelCatalog.from_settings(settings(chatbrush_models=PRO3))
    first = catalog.get(PRO3)
    assert catalog.get(f"gemini:{PRO3}") is first
    assert catalog.get(FLASH) is not first
    assert catalog.create(PRO3) is not first  # a model of its own, for its caller
    await catalog.aclose()
    with pytest.raises(RuntimeError):
        catalog.get(PRO3)


async def test_closing_the_catalog_closes_its_models(
    services: tuple[FakeGemini, FakeOpenAI],
) -> None:
    google, relay = services
    catalog = ModelCatalog.from_settings(both(google, relay, chatbrush_models=f"openai:{RELAYED}"))
    models = [catalog.get(FLASH), catalog.get(f"openai:{RELAYED}")]
    await catalog.aclose()
    for model in models:
        with pytest.raises(ModelError) as info:
            await model.generate(ask())
        assert info.value.user_message == hp.INTERNAL_MESSAGE
        assert "closed" in info.value.detail
    assert google.requests == [] and relay.requests == []


async def test_an_unknown_listed_model_points_at_the_list(
    services: tuple[FakeGemini, FakeOpenAI],
) -> None:
    google, relay = services
    catalog = ModelCatalog.from_settings(
        both(google, relay, chatbrush_models="gemini-9-nonexistent")
    )
    try:
        with pytest.raises(ModelError) as info:
            await catalog.get("gemini-9-nonexistent").generate(ask())
    finally:
        await catalog.aclose()
    assert "gemini-9-nonexistent" in info.value.user_message
    assert "CHATBRUSH_MODELS" in info.value.user_message


# --------------------------------------------------------------------------- choose_model


async def test_choose_model_gives_the_default_or_the_demo() -> None:
    assert isinstance(choose_model(load_settings(), demo=True), DemoModel)
    model = choose_model(settings(chatbrush_provider="openai"))
    try:
        assert isinstance(model, OpenAICompatModel) and model.name == RELAYED
    finally:
        await model.aclose()
    with pytest.raises(SettingsError):
        choose_model(load_settings())
