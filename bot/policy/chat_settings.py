"""What a chat's admins may choose for their chat; the operator's settings are the defaults.

The flow reads them once per event (:meth:`bot.flow.choices.ChatChoices.chat_settings`), so
a feature that depends on a chat's choice (the model, the aspect ratio, whether pictures go
out as files, what Content Credentials may say) reads it in one place. The value types
(:class:`~bot.core.chat_settings.ChatSettings`) live in the core, which carries them on
each work item; the rules that parse and resolve them are here.

A chat's choices are stored as text by name (``Store.chat_settings``); :func:`parse`
checks and normalises what an admin typed, :func:`resolve` turns the stored text back
into :class:`ChatSettings` over the operator's defaults.

**Limits** are the operator's wallet, so a chat admin may only tighten them: a chat's
limit counts up to the operator's (the lower of the two applies). An operator
(``CHATBRUSH_ADMINS``) may set any value for a chat, including none; such a value is
stored with a leading ``=`` and applies exactly as set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

from bot.core.chat_settings import ChatLimits, ChatSettings
from bot.core.config import Settings
from bot.core.errors import UserFacingError
from bot.kit.formatting import dollars
from bot.kit.i18n import _, normalize
from bot.models.ignored_settings import STORED_AS as IGNORED_STORED_AS
from bot.models.options import AUTO, aspect_ratios, image_sizes
from bot.models.pricing import to_micros

#: the highest limit anyone can type, in US dollars
MAX_USD = Decimal(1_000_000)
MAX_PER_MINUTE = 10_000
MAX_BLOCKED_TERMS = 100
#: words that put a setting back to the operator's default
RESET_WORDS = frozenset({"default", "reset", "unset"})
#: a limit set by an operator: applies exactly, even above the operator's default
EXACT = "="
NO_LIMIT = "none"

MONEY_LIMITS = ("daily", "monthly", "user_daily", "user_monthly")
SWITCHES = ("credentials_prompt", "send_originals")
#: every setting a chat can store, in the order /settings shows them
NAMES = ("model", "aspect", "size", "language", *MONEY_LIMITS, "per_minute", *SWITCHES,
         "blocked_terms")
ALIASES = {"aspect_ratio": "aspect", "ratio": "aspect", "image_size": "size",
           "lang": "language", "blocked": "blocked_terms", "originals": "send_originals",
           "chat_daily": "daily", "chat_monthly": "monthly", "rate": "per_minute"}


class SettingError(UserFacingError):
    """A value an admin typed that cannot be stored; ``str()`` says why and what works."""


def _micros_from_dollars(value: float | None) -> int | None:
    """The operator's budget in dollars as the micro-dollars limits are kept in."""
    return None if value is None else to_micros(value)


def operator_limits(settings: Settings) -> ChatLimits:
    return ChatLimits(
        user_daily=_micros_from_dollars(settings.chatbrush_user_daily_usd),
        user_monthly=_micros_from_dollars(settings.chatbrush_user_monthly_usd),
        chat_daily=_micros_from_dollars(settings.chatbrush_chat_daily_usd),
        chat_monthly=_micros_from_dollars(settings.chatbrush_chat_monthly_usd),
        user_per_minute=settings.chatbrush_user_per_minute,
    )


def defaults(settings: Settings, model: str) -> ChatSettings:
    """A chat that changed nothing: the operator's choices."""
    return ChatSettings(
        model=model,
        aspect_ratio=settings.gemini_aspect_ratio,
        image_size=settings.gemini_image_size,
        limits=operator_limits(settings),
    )


def canonical_name(word: str) -> str | None:
    name = word.strip().lower().replace("-", "_")
    name = ALIASES.get(name, name)
    return name if name in NAMES else None


# ---------------------------------------------------------------------- stored → settings
def resolve(settings: Settings, stored: Mapping[str, str], *, default_model: str,
            allowed_model: Callable[[str], str | None]) -> ChatSettings:
    """The chat's settings: each stored choice over the operator's default. A stored
    value that no longer fits (a model the operator removed, a size the chat's model
    does not take) is ignored rather than sent."""
    base = defaults(settings, default_model)
    model = allowed_model(stored["model"]) if "model" in stored else None
    model = model or default_model
    aspect = stored.get("aspect", base.aspect_ratio)
    if aspect not in (None, AUTO) and aspect not in aspect_ratios(model):
        aspect = base.aspect_ratio
    size = stored.get("size", base.image_size)
    if "size" in stored and size not in image_sizes(model):
        size = base.image_size
    terms: tuple[str, ...] = ()
    if "blocked_terms" in stored:
        try:
            terms = tuple(str(t) for t in json.loads(stored["blocked_terms"]))
        except (ValueError, TypeError):
            terms = ()
    limits = base.limits
    return ChatSettings(
        model=model,
        aspect_ratio=aspect,
        image_size=size,
        language=stored.get("language"),
        credentials_prompt=stored.get("credentials_prompt") == "on",
        send_originals=stored.get("send_originals") == "on",
        blocked_terms=terms,
        ignored_on_record=IGNORED_STORED_AS in stored,
        limits=ChatLimits(
            user_daily=_limit(stored.get("user_daily"), limits.user_daily, money=True),
            user_monthly=_limit(stored.get("user_monthly"), limits.user_monthly, money=True),
            chat_daily=_limit(stored.get("daily"), limits.chat_daily, money=True),
            chat_monthly=_limit(stored.get("monthly"), limits.chat_monthly, money=True),
            user_per_minute=_limit(stored.get("per_minute"), limits.user_per_minute,
                                   money=False),
        ),
    )


def _limit(stored: str | None, operator: int | None, *, money: bool) -> int | None:
    if stored is None:
        return operator
    exact = stored.startswith(EXACT)
    text = stored.removeprefix(EXACT)
    if text == NO_LIMIT:
        return None if exact else operator
    try:
        value = to_micros(float(text)) if money else int(text)
    except ValueError:
        return operator
    if exact or operator is None:
        return value
    return min(value, operator)


# ---------------------------------------------------------------------- typed → stored
def parse(name: str, raw: str, *, model: str, models: tuple[str, ...],
          allowed_model: Callable[[str], str | None], operator: ChatLimits,
          by_operator: bool) -> str | None:
    """What to store for ``/settings <name> <raw>`` (``None``: back to the default), or
    :class:`SettingError` saying what would work. ``model`` is the chat's current model
    (aspect ratios and sizes depend on it), ``models`` the allowed ones."""
    value = raw.strip()
    if not value:
        raise SettingError(_("Give a value after the setting's name."))
    if value.lower() in RESET_WORDS:
        return None
    if name == "model":
        found = allowed_model(value)
        if found is None:
            raise SettingError(_("“{value}” is not one of the models this bot offers: "
                                 "{choices}.").format(value=value, choices=", ".join(models)))
        return found
    if name == "aspect":
        return _parse_aspect(value, model)
    if name == "size":
        return _parse_size(value, model)
    if name == "language":
        return _parse_language(value)
    if name in MONEY_LIMITS:
        return _parse_money(name, value, operator, by_operator=by_operator)
    if name == "per_minute":
        return _parse_per_minute(value, operator.user_per_minute, by_operator=by_operator)
    if name in SWITCHES:
        return _parse_switch(value)
    return _parse_terms(value)


def _parse_aspect(value: str, model: str) -> str:
    choices = aspect_ratios(model)
    if value.lower() == AUTO:
        return AUTO
    ratio = value.replace("x", ":").replace("×", ":").replace("/", ":").replace(" ", "")
    if ratio in choices:
        return ratio
    raise SettingError(_("“{value}” is not an aspect ratio {model} can draw. Choose one of "
                         "{choices}, or auto to keep the shape of the picture you edit.")
                       .format(value=value, model=model, choices=", ".join(choices)))


def _parse_size(value: str, model: str) -> str:
    choices = image_sizes(model)
    if not choices:
        raise SettingError(_("{model} always draws at one size; choose a model that offers "
                             "2K or 4K first.").format(model=model))
    size = value.upper()
    if size in choices:
        return size
    raise SettingError(_("“{value}” is not an image size {model} offers. Choose one of "
                         "{choices}.").format(value=value, model=model,
                                              choices=", ".join(choices)))


_ENGLISH = frozenset({"en", "english", "英文", "英语"})
_CHINESE = frozenset({"zh", "chinese", "中文", "简体中文", "汉语", "普通话"})


def _parse_language(value: str) -> str | None:
    word = value.strip().lower()
    if word in ("auto", "user", "each"):
        return None
    if word in _ENGLISH or word.startswith("en-") or word.startswith("en_"):
        return "en"
    if word in _CHINESE or normalize(word) == "zh_Hans":
        return "zh_Hans"
    raise SettingError(_("I speak English (en) and Simplified Chinese (zh). Use auto to "
                         "answer everyone in their own app's language."))


_MONEY = re.compile(r"^(?:us)?\$?\s*(\d+(?:[.,]\d{1,4})?)\s*(?:usd|\$|dollars?)?$", re.I)


def _parse_money(name: str, value: str, operator: ChatLimits, *, by_operator: bool) -> str:
    ceiling = {"daily": operator.chat_daily, "monthly": operator.chat_monthly,
               "user_daily": operator.user_daily,
               "user_monthly": operator.user_monthly}[name]
    shown = None if ceiling is None else dollars(ceiling)
    if value.lower() in (NO_LIMIT, "off", "unlimited"):
        return _unlimited(shown, by_operator=by_operator)
    match = _MONEY.match(value.strip())
    if match is None:
        raise SettingError(_("Give an amount in US dollars, like 2.50 (or none)."))
    try:
        amount = Decimal(match.group(1).replace(",", "."))
    except InvalidOperation:
        raise SettingError(_("Give an amount in US dollars, like 2.50 (or none).")) from None
    if amount > MAX_USD:
        raise SettingError(_("That is more than this bot can count; give at most "
                             "1,000,000."))
    above = ceiling is not None and to_micros(float(amount)) > ceiling
    return _within(f"{amount.normalize():f}", shown, above=above, by_operator=by_operator)


def _parse_per_minute(value: str, ceiling: int | None, *, by_operator: bool) -> str:
    shown = None if ceiling is None else _("{count} a minute").format(count=ceiling)
    if value.lower() in (NO_LIMIT, "off", "unlimited"):
        return _unlimited(shown, by_operator=by_operator)
    if not value.isdigit() or not 1 <= int(value) <= MAX_PER_MINUTE:
        raise SettingError(_("Give a whole number of requests a minute, from 1 to "
                             "{most} (or none).").format(most=MAX_PER_MINUTE))
    above = ceiling is not None and int(value) > ceiling
    return _within(str(int(value)), shown, above=above, by_operator=by_operator)


def _unlimited(ceiling: str | None, *, by_operator: bool) -> str:
    """``none``: an operator's word is exact; a chat may drop only a limit the operator
    does not set (``ceiling`` is the operator's, as shown)."""
    if by_operator:
        return EXACT + NO_LIMIT
    if ceiling is not None:
        raise SettingError(_("Only the bot's operators can lift this limit; the most you "
                             "can set here is {limit}.").format(limit=ceiling))
    return NO_LIMIT


def _within(text: str, ceiling: str | None, *, above: bool, by_operator: bool) -> str:
    if by_operator:
        return EXACT + text
    if above:
        raise SettingError(_("The bot's operators allow at most {limit} here; you can set "
                             "a lower limit, not a higher one.").format(limit=ceiling))
    return text


def _parse_switch(value: str) -> str:
    word = value.lower()
    if word in ("on", "yes", "true", "1", "开", "开启"):
        return "on"
    if word in ("off", "no", "false", "0", "关", "关闭"):
        return "off"
    raise SettingError(_("Use on or off."))


def _parse_terms(value: str) -> str | None:
    if value.lower() in ("none", "off", "clear"):
        return None
    terms = [t.strip() for t in re.split(r"[,，、\n]", value) if t.strip()]
    if len(terms) > MAX_BLOCKED_TERMS:
        raise SettingError(_("That is more than {most} words; keep the list shorter.")
                           .format(most=MAX_BLOCKED_TERMS))
    return json.dumps(terms, ensure_ascii=False)
