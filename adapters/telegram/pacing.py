"""Telegram's send limits per chat, as the Bot API documents and enforces them.

The adapter's limiter and the pace it registers with the core both read them here, so the
two never disagree about how fast a group may be written to.
"""

from __future__ import annotations

from bot.core.platforms import SendPace

#: Telegram's limits per chat: a group or channel may get 20 messages in any minute, a
#: person about one a second (beyond them it answers 429 with ``retry_after``). Kept a
#: little under them: the request arrives a moment after it was let go
GROUP_PACE = SendPace(messages=20, seconds=61.0)
PRIVATE_PACE = SendPace(messages=1, seconds=1.05)


def pace_for_chat_id(chat_id: str | int) -> SendPace:
    """Telegram gives people positive chat ids, groups and channels negative ones."""
    text = str(chat_id)
    return GROUP_PACE if text.startswith("-") or not text.isdigit() else PRIVATE_PACE
