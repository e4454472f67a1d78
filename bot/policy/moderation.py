"""The moderation hook: prompts with blocked words or patterns are refused politely before
any model call, and before anything is stored as a turn or downloaded.

Rules come from the operator (``CHATBRUSH_BLOCKED_TERMS``, a comma list, and
``CHATBRUSH_BLOCKED_PATTERNS``, a file of regular expressions one a line) and from the
chat (:attr:`bot.policy.chat_settings.ChatSettings.blocked_terms`). A term is matched as written,
whatever its case and width: text and terms are NFKC-normalised (full-width ``ＧＯＲＥ`` is
``GORE``, half-width katakana are full-width), invisible format characters (zero-width
spaces, soft hyphens) are dropped, and matching ignores case with full case folding
(``STRASSE`` matches ``straße``). A term in a script that separates words with spaces
matches whole words only (``ass`` does not block "class"); Chinese, Japanese, Thai and the
like have no spaces between words, so there a term matches anywhere (``血腥`` blocks
``画一个血腥的场景``). A term written ``re:…`` is a regular expression, as is every line of the
patterns file.

Regular expressions can take exponential time on a crafted input, and chat admins may
write them, so a pattern is compiled and checked at load (it must compile, be at most
:data:`MAX_PATTERN_CHARS` long, and not match the empty prompt — that would refuse
everything), and every match runs under a time limit with the ``regex`` package: a
pattern that runs out of time is skipped for that prompt, with a warning for the operator.

Each refusal is logged for audit with the user id, the chat and which rule (not the
prompt). The refusal itself names no rule: an operator's list can be private.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import regex

from bot.core.config import Settings, SettingsError
from bot.core.errors import UserFacingError
from bot.kit.i18n import N_, _

log = logging.getLogger(__name__)

REFUSED: Final = N_("Sorry, I can't take that request here: it contains something this chat "
                    "doesn't allow. Please rephrase it.")
PATTERN_PREFIX: Final = "re:"
MAX_PATTERN_CHARS: Final = 1000
#: a chat's own list is cut at this many terms (the operator's is not)
MAX_CHAT_TERMS: Final = 500
#: seconds all the patterns together may spend on one prompt
MATCH_BUDGET: Final = 0.05
_FLAGS: Final = regex.IGNORECASE | regex.FULLCASE
#: scripts written without spaces between words: terms in them match anywhere
_UNSPACED: Final = (r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\p{Lao}\p{Khmer}"
                    r"\p{Myanmar}\p{Tibetan}")
#: a word character of a script that does use spaces: what a whole-word term must not touch
_SPACED_WORD: Final = rf"[^\W{_UNSPACED}]"


class BadRule(ValueError):
    """A term or pattern that cannot be used; ``str()`` says why in one line."""


@dataclass(frozen=True)
class Rule:
    """One blocked term or pattern: where it came from and how it was written."""

    source: str  # "operator", "chat"
    written: str
    pattern: Any  # a compiled regex.Pattern

    def __str__(self) -> str:
        return f"{self.source} rule {self.written!r}"


def normalize(text: str) -> str:
    """What a prompt is matched as: NFKC (width and compatibility forms folded), without
    invisible format characters that could hide a word (zero-width spaces, soft hyphens)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def compile_rule(written: str, *, source: str, pattern: bool = False) -> Rule:
    """A rule from a term (``re:`` prefix: a pattern) or, with ``pattern``, a pattern."""
    text = written.strip()
    if text.startswith(PATTERN_PREFIX):
        text, pattern = text[len(PATTERN_PREFIX):].strip(), True
    if not text:
        raise BadRule("is empty")
    if len(text) > MAX_PATTERN_CHARS:
        raise BadRule(f"is longer than {MAX_PATTERN_CHARS} characters")
    source_text = text if pattern else _term_pattern(text)
    try:
        compiled = regex.compile(source_text, _FLAGS)
    except regex.error as exc:
        raise BadRule(f"is not a valid regular expression ({exc})") from None
    try:
        matches_nothing = compiled.search("", timeout=MATCH_BUDGET) is None
    except TimeoutError:
        matches_nothing = False
    if not matches_nothing:
        raise BadRule("matches an empty prompt, so it would refuse everything")
    return Rule(source, written.strip(), compiled)


def _term_pattern(term: str) -> str:
    """A literal term as a pattern: any run of spaces between its words, and whole words
    at an edge written in a script that uses spaces."""
    words = normalize(term).split()
    body = r"\s+".join(regex.escape(word) for word in words)
    first, last = words[0][0], words[-1][-1]
    left = rf"(?<!{_SPACED_WORD})" if regex.match(_SPACED_WORD, first) else ""
    right = rf"(?!{_SPACED_WORD})" if regex.match(_SPACED_WORD, last) else ""
    return f"{left}{body}{right}"


@lru_cache(maxsize=4096)
def _chat_rule(written: str) -> Rule | None:
    """A chat's term, compiled once; None (with a warning) for one that cannot be used."""
    try:
        return compile_rule(written, source="chat")
    except BadRule as exc:
        log.warning("moderation: ignoring the chat's blocked term %r: it %s", written, exc)
        return None


class Moderation:
    """The operator's rules; :meth:`screen` adds a chat's own for each prompt."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = tuple(rules)

    @classmethod
    def from_settings(cls, settings: Settings) -> Moderation:
        """The operator's lists; a bad entry stops the bot with one line naming it."""
        rules = []
        for term in settings.chatbrush_blocked_terms:
            try:
                rules.append(compile_rule(term, source="operator"))
            except BadRule as exc:
                raise SettingsError(
                    f"invalid setting CHATBRUSH_BLOCKED_TERMS: {term!r} {exc}") from None
        path = settings.chatbrush_blocked_patterns
        if path is not None:
            rules += _read_patterns(path)
        if rules:
            log.info("moderation: %d blocked term(s) and pattern(s) from the operator",
                     len(rules))
        return cls(rules)

    def first_match(self, text: str, chat_terms: Iterable[str] = ()) -> Rule | None:
        """The first rule ``text`` breaks, or None. Patterns share :data:`MATCH_BUDGET`."""
        chat_rules = [r for r in (_chat_rule(t) for t in list(chat_terms)[:MAX_CHAT_TERMS])
                      if r is not None]
        if not text or not (self.rules or chat_rules):
            return None
        prompt = normalize(text)
        deadline = time.monotonic() + MATCH_BUDGET
        for rule in (*self.rules, *chat_rules):
            remaining = max(0.001, deadline - time.monotonic())
            try:
                if rule.pattern.search(prompt, timeout=remaining) is not None:
                    return rule
            except TimeoutError:
                log.warning("moderation: the %s took too long on a prompt and was skipped; "
                            "simplify it", rule)
        return None

    def screen(self, text: str, chat_terms: Iterable[str], *, user_id: str,
               where: str) -> None:
        """Raise :class:`UserFacingError` (and log it for audit) if ``text`` is refused."""
        rule = self.first_match(text, chat_terms)
        if rule is not None:
            log.info("moderation: refused a prompt from user %s in %s (%s)", user_id, where,
                     rule)
            raise UserFacingError(_(REFUSED))


def _read_patterns(path: Path) -> list[Rule]:
    variable = "CHATBRUSH_BLOCKED_PATTERNS"
    try:
        lines = path.expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SettingsError(f"invalid setting {variable}: cannot read {path} ({why})") from None
    rules = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            rules.append(compile_rule(line, source="operator", pattern=True))
        except BadRule as exc:
            raise SettingsError(f"invalid setting {variable}: {path} line {number} {exc}"
                                ) from None
    return rules
