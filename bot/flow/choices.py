"""A chat's choices as the flow reads them: its settings over the operator's, and the
models it may pick from."""

from __future__ import annotations

from bot.core.chat_settings import ChatSettings
from bot.core.config import Settings
from bot.core.events import ChatKey
from bot.core.store import Store
from bot.core.work import Work
from bot.models.base import ImageModel
from bot.models.catalog import ModelCatalog, UnknownModel
from bot.policy.chat_settings import resolve


class ChatChoices:
    """Shared by the router, the turn service, delivery and the commands."""

    def __init__(self, store: Store, model: ImageModel, settings: Settings, *,
                 catalog: ModelCatalog | None = None) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        #: the models a chat may choose from (``None``: only ``model``)
        self.catalog = catalog

    async def settings_for(self, work: Work) -> ChatSettings:
        """The chat's settings for this event: read once when it was taken up, not by
        each step of a turn (there were five reads a turn); read now when that failed."""
        if work.chat_settings is not None:
            return work.chat_settings
        return await self.chat_settings(work.event.chat)

    async def chat_settings(self, chat: ChatKey) -> ChatSettings:
        """The chat's choices (model, aspect ratio, …), the operator's where it made none."""
        return resolve(self.settings, await self.store.chat_settings(chat),
                       default_model=self.model.name, allowed_model=self.allowed_model)

    def model_names(self) -> tuple[str, ...]:
        """The models a chat may choose, the default first."""
        if self.catalog is None:
            return (self.model.name,)
        names = self.catalog.names()
        return names if self.model.name in names else (self.model.name, *names)

    def allowed_model(self, name: str) -> str | None:
        """The allowed model ``name`` stands for (as the catalog spells it), or ``None``."""
        if name.strip().lower() == self.model.name.lower():
            return self.model.name
        if self.catalog is None:
            return None
        try:
            return self.catalog.entry(name.strip()).name
        except UnknownModel:
            return None

    def model_for(self, name: str) -> ImageModel:
        """The client for the chat's chosen model (the default when it is gone)."""
        if name == self.model.name or self.catalog is None:
            return self.model
        if name == self.catalog.default and self.catalog.entry(name).model == self.model.name:
            return self.model  # the default, as the catalog spells it
        try:
            return self.catalog.get(name)
        except (UnknownModel, RuntimeError):
            return self.model
