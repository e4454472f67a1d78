"""Lines run work in the order it was reserved, whatever order it starts waiting in."""

from __future__ import annotations

import asyncio

from bot.ordering import Lines


async def test_reservation_order_wins_over_waiting_order() -> None:
    lines = Lines()
    ran: list[str] = []
    first = lines.reserve("chat")
    second = lines.reserve("chat")

    async def run(name: str, ticket: object, delay: float) -> None:
        await asyncio.sleep(delay)
        async with ticket:  # type: ignore[attr-defined]
            ran.append(name)
            await asyncio.sleep(0.01)

    # the second starts waiting first, but reserved later: it must still go second
    await asyncio.gather(run("first", first, 0.05), run("second", second, 0.0))
    assert ran == ["first", "second"]
    assert not lines.busy("chat")


async def test_a_cancelled_waiter_does_not_block_the_line() -> None:
    lines = Lines()
    holder = lines.reserve("t")
    stuck = lines.reserve("t")
    after = lines.reserve("t")

    async def wait(ticket: object) -> None:
        async with ticket:  # type: ignore[attr-defined]
            pass

    task = asyncio.create_task(wait(stuck))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with holder:
        pass
    await asyncio.wait_for(wait(after), 1)
    assert not lines.busy("t")


async def test_released_unused_ticket_lets_the_next_in() -> None:
    lines = Lines()
    unused = lines.reserve("k")
    nxt = lines.reserve("k")
    assert lines.busy("k")
    unused.release()
    unused.release()  # idempotent
    async with nxt:
        pass
    assert not lines.busy("k")


async def test_different_keys_do_not_wait_for_each_other() -> None:
    lines = Lines()
    a = lines.reserve("a")
    b = lines.reserve("b")
    async with a:
        await asyncio.wait_for(b.__aenter__(), 0.5)
        b.release()
