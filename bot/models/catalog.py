"""The models an operator allows, by name, each created when first used.

A chat may pick its model from this list (and only from it), so names must be exact and a
wrong one must say what the choices are. Entries of ``CHATBRUSH_MODELS`` (comma-separated)
name a model and how to reach it:

- ``gemini-3-pro-image-preview`` — Gemini's own API, or a relay that speaks it
  (``GEMINI_BASE_URL``, ``GEMINI_API_KEY``, ``GEMINI_AUTH_HEADER``); ``gemini:`` in front
  says the same explicitly;
- ``openai:google/gemini-2.5-flash-image`` — an OpenAI-compatible endpoint
  (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``); everything after ``openai:`` is the model id
  as that service spells it, colons included (``openai:…-preview:free``).

The default model — ``GEMINI_MODEL``, or ``openai:`` + ``OPENAI_MODEL`` when
``CHATBRUSH_PROVIDER=openai`` — is always allowed and comes first. Every key an entry needs
is checked when the catalog is built, so a missing one stops the bot at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.core.config import Settings, SettingsError
from bot.models import gemini, openai_compat
from bot.models.base import ImageModel

PROVIDERS: Final = ("gemini", "openai")


@dataclass(frozen=True)
class ModelEntry:
    """One allowed model: which provider reaches it, and its id at that provider."""

    provider: str
    model: str

    @property
    def name(self) -> str:
        """The name operators write and chats choose by (Gemini's need no prefix)."""
        return self.model if self.provider == "gemini" else f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, text: str) -> ModelEntry:
        """An entry from its written form; :class:`ValueError` says what is wrong."""
        text = text.strip()
        prefix, colon, rest = text.partition(":")
        if colon and prefix.strip().lower() in PROVIDERS:
            provider, model = prefix.strip().lower(), rest.strip()
        elif colon and "/" not in prefix:
            raise ValueError(
                f"{text!r} names an unknown provider {prefix!r}; use gemini: or openai:"
            )
        else:
            provider, model = "gemini", text
        if provider == "gemini":
            model = model.removeprefix("models/")
            if "/" in model:
                raise ValueError(
                    f"{text!r} is not a Gemini model name; for a relay write openai:{model}"
                )
        if not model:
            raise ValueError(f"{text!r} names no model")
        return cls(provider, model)


class UnknownModel(LookupError):
    """A model name that is not in the catalog; ``str()`` lists the allowed ones."""

    def __init__(self, name: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"unknown model {name!r}; allowed: {', '.join(allowed)}")
        self.name = name
        self.allowed = allowed


class ModelCatalog:
    """The default model and the operator's list, one client per model, made lazily."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        default = (
            ModelEntry("openai", settings.openai_model.strip())
            if settings.chatbrush_provider == "openai"
            else ModelEntry("gemini", settings.gemini_model.strip().removeprefix("models/"))
        )
        if not default.model:
            variable = "OPENAI_MODEL" if default.provider == "openai" else "GEMINI_MODEL"
            raise SettingsError(f"invalid setting {variable}: it names no model")
        entries: dict[str, ModelEntry] = {default.name: default}
        for text in settings.chatbrush_models:
            try:
                entry = ModelEntry.parse(text)
            except ValueError as exc:
                raise SettingsError(f"invalid setting CHATBRUSH_MODELS: {exc}") from None
            entries.setdefault(entry.name, entry)
        self._entries = entries
        self._default = default.name
        self._models: dict[str, ImageModel] = {}
        self._closed = False
        for provider in {e.provider for e in entries.values()}:  # fail at start-up, not later
            (openai_compat if provider == "openai" else gemini).api_key(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelCatalog:
        return cls(settings)

    @property
    def default(self) -> str:
        return self._default

    def names(self) -> tuple[str, ...]:
        """Every allowed name, the default first."""
        return tuple(self._entries)

    def entry(self, name: str) -> ModelEntry:
        """The entry a name stands for; ``gemini:x`` and ``x`` are the same model."""
        try:
            key = ModelEntry.parse(name).name
        except ValueError:
            key = name
        found = self._entries.get(key)
        if found is None:
            raise UnknownModel(name, self.names())
        return found

    def get(self, name: str) -> ImageModel:
        """The catalog's model for ``name`` (created on first use, then shared); the
        catalog closes it. Raises :class:`UnknownModel` for a name not allowed."""
        if self._closed:
            raise RuntimeError("the model catalog is closed")
        entry = self.entry(name)
        model = self._models.get(entry.name)
        if model is None:
            model = self._models[entry.name] = self.create(entry.name)
        return model

    def create(self, name: str) -> ImageModel:
        """A new model for ``name`` that the caller owns and closes."""
        entry = self.entry(name)
        default = entry.name == self._default
        if entry.provider == "openai":
            return openai_compat.OpenAICompatModel.from_settings(
                self._settings,
                model=entry.model,
                model_setting="OPENAI_MODEL" if default else "CHATBRUSH_MODELS",
            )
        return gemini.GeminiModel.from_settings(
            self._settings,
            model=entry.model,
            model_setting="GEMINI_MODEL" if default else "CHATBRUSH_MODELS",
        )

    async def aclose(self) -> None:
        """Close every model made so far; each is closed even if another fails."""
        self._closed = True
        models, self._models = list(self._models.values()), {}
        errors: list[BaseException] = []
        for model in models:
            try:
                await model.aclose()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
