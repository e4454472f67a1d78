"""Telling a chat, once, that the service ignored the size or aspect ratio it asked for.

What was told is remembered in the chat settings store, as the internal setting
``ignored_by_service`` (a JSON record, see :mod:`bot.models.ignored_settings`): both
backends keep it with no schema of its own, ``/settings`` reads it from there, and a
chat is told again only when it asks for another value that is ignored too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.core.events import ChatKey
from bot.core.store import Store
from bot.kit.i18n import N_, _
from bot.kit.image_types import OutputImage
from bot.models.base import GenerateRequest, ImageModel
from bot.models.ignored_settings import STORED_AS, Ignored, dump, ignored, load, update
from bot.models.options import AUTO

log = logging.getLogger(__name__)

SETTING_NAMES = {"size": N_("image size"), "aspect": N_("aspect ratio")}


def asked_of(model: ImageModel, request: GenerateRequest, *, chat_aspect: str | None
             ) -> dict[str, str]:
    """The size and aspect ratio the call asked for (the chat's, else the model's
    defaults); a ratio the bot chose itself ("auto") is no user's wish."""
    asked: dict[str, str] = {}
    size = request.image_size or getattr(model, "image_size", None)
    aspect = request.aspect_ratio or getattr(model, "aspect_ratio", None)
    if size:
        asked["size"] = str(size).upper()
    if aspect and chat_aspect != AUTO and aspect != AUTO:
        asked["aspect"] = str(aspect)
    return asked


async def tell_once(store: Store, chat: ChatKey, model: ImageModel, request: GenerateRequest,
                    outputs: Sequence[OutputImage], *, chat_aspect: str | None,
                    on_record: bool) -> str:
    """The line to add to the answer when it ignored a setting the chat was not yet told
    about ("" otherwise); the record is kept up to date either way. Never fails a turn.
    ``on_record``: the chat's settings, as the event read them, hold a record; without one
    an answer that followed every setting has nothing to update, and the store is not read."""
    asked = asked_of(model, request, chat_aspect=chat_aspect)
    if not asked or not outputs:
        return ""
    final = outputs[-1]
    found = ignored(final.width, final.height, size=asked.get("size"),
                    aspect=asked.get("aspect"))
    if not found and not on_record:
        return ""
    try:
        stored = await store.chat_settings(chat)
        record = load(stored.get(STORED_AS))
        new, untold = update(record, found, asked)
        if new != record:
            await store.set_chat_setting(chat, STORED_AS, dump(new), changed_by="bot")
    except Exception:
        log.exception("could not remember what the service ignored in %s", chat)
        return ""
    for missed in found:
        level = logging.WARNING if missed in untold else logging.INFO
        log.log(level, "%s%s ignored %s %s: the answer came back at %s", model.name,
                _via(model), SETTING_NAMES[missed.setting], missed.asked, missed.got)
    return "\n" + notice(untold) if untold else ""


def _via(model: ImageModel) -> str:
    endpoint = getattr(model, "endpoint", "")
    return f" via {endpoint}" if endpoint else ""


def notice(untold: Sequence[Ignored]) -> str:
    """One short line for the chat."""
    parts = [_("you asked for {setting} {asked}, this came back at {got}").format(
        setting=_(SETTING_NAMES[i.setting]), asked=i.asked, got=i.got) for i in untold]
    return _("(The model service ignored a setting: {what}.)").format(what="; ".join(parts))


def came_back(stored: dict[str, str], setting: str, current: str | None) -> str:
    """For /settings: " — the last answer came back at 1K (1024×1024)" while the chat
    still asks for what the service last ignored, else ""."""
    remembered = load(stored.get(STORED_AS)).get(setting)
    if remembered is None or not remembered.still or not current:
        return ""
    if remembered.asked.upper() != current.upper():
        return ""
    return " — " + _("the last answer came back at {got}").format(got=remembered.got)
