"""The fair delivery scheduler: a chat's backlog waits on its own pace, holding no shared
place, and a quiet chat gets a place at once; a pause for one chat holds only that chat."""

from __future__ import annotations

import asyncio

from bot.core.platforms import SendPace
from bot.flow.pacing import PLACES_PER_CHAT, ChatPacer

SLOW = SendPace(messages=2, seconds=3600.0)  # a group that has used its window


async def test_a_paced_backlog_holds_no_shared_place_and_a_quiet_chat_goes_at_once() -> None:
    pacer = ChatPacer(places=3)
    sent: list[str] = []
    held = asyncio.Event()

    async def send(key: str, pace: SendPace | None, name: str) -> None:
        async with pacer.place(key, pace):
            sent.append(name)
            if key == "group":
                held.set()

    flood = [asyncio.create_task(send("group", SLOW, f"g{n}")) for n in range(50)]
    await held.wait()
    # the group used its two messages of the window; 48 sends wait on its pace
    await asyncio.wait_for(send("person", None, "quiet"), 1)
    group_sent = sum(name.startswith("g") for name in sent)
    assert "quiet" in sent and group_sent <= 2
    assert pacer.waiting("group") == 50 - group_sent
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)


async def test_one_chat_never_holds_more_than_its_few_places() -> None:
    pacer = ChatPacer(places=10)
    inside = 0
    most = 0
    release = asyncio.Event()

    async def send() -> None:
        nonlocal inside, most
        async with pacer.place("group", None):
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(send()) for _ in range(20)]
    while inside < PLACES_PER_CHAT:  # noqa: ASYNC110 (the places fill as tasks start)
        await asyncio.sleep(0)
    async with pacer.place("other", None):  # a free place remains for everyone else
        pass
    release.set()
    await asyncio.gather(*tasks)
    assert most == PLACES_PER_CHAT


async def test_a_pause_holds_only_its_chat() -> None:
    now = [1000.0]
    pacer = ChatPacer(places=4, clock=lambda: now[0])
    entered: list[str] = []

    async def send(key: str) -> None:
        async with pacer.place(key, None):
            entered.append(key)

    async with pacer.place("group", None):
        pacer.pause("group", 30)
    waiting = asyncio.create_task(send("group"))  # pauses until the clock passes 1030
    await asyncio.wait_for(send("person"), 1)
    assert entered == ["person"]
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
