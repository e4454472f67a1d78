"""Whether a message just asks to run the failed request again ("try again", "重试").

After a failure the bot says "reply “try again”"; a reply that says only that means the
same instruction, with the same pictures — not a new instruction reading "try again".
Anything more ("try again but make it blue") is a new instruction and is sent as written.
"""

from __future__ import annotations

import re
import unicodedata

_RETRY = re.compile(
    r"(?:please\s+|请)?(?:(?:try|do\s+it|go)\s+(?:it\s+)?again|again|retry|redo|one\s+more\s+time|"
    r"once\s+more|重试|再试(?:一次|一下)?|再来(?:一次|一遍)?|再做一次|重新来|重来)"
    r"(?:\s+please)?(?:\s*(?:please|pls|plz|thanks|thank\s+you|请|吧|谢谢))*",
    re.IGNORECASE,
)


def asks_to_retry(text: str) -> bool:
    """``True`` for a bare request to try again, in English or Chinese."""
    words = unicodedata.normalize("NFKC", text).strip().lower()
    words = re.sub(r"[\s.!?,;:。！？，；：~…]+$", "", words)
    words = re.sub(r"^[\s,，]+", "", words)
    return bool(words) and _RETRY.fullmatch(words) is not None
