"""core/wakeups.py: a loop sleeping until poked stops when cancelled, whenever the poke comes."""

from __future__ import annotations

import asyncio

import pytest

from core.wakeups import wait_for_wake


async def test_it_answers_whether_it_was_woken_or_timed_out():
    event = asyncio.Event()
    assert await wait_for_wake(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_for_wake(event, 5) is True


@pytest.mark.parametrize("turns_before", [0, 1, 2])
@pytest.mark.parametrize("poke", ["before_cancel", "after_cancel", "both"])
async def test_a_sleeper_cancelled_as_it_is_poked_stops(turns_before: int, poke: str):
    """The status watcher's loop: poked and cancelled in the same turn (an agent's change
    as the app shuts down). Around ``asyncio.wait_for`` the poke won and the cancellation
    was lost on Python 3.11: the loop slept again for its full timeout."""
    wake = asyncio.Event()

    async def sleeper() -> None:
        while True:
            wake.clear()
            await wait_for_wake(wake, 300)

    task = asyncio.create_task(sleeper())
    for _ in range(turns_before):
        await asyncio.sleep(0)
    if poke in ("before_cancel", "both"):
        wake.set()
    task.cancel()
    if poke in ("after_cancel", "both"):
        wake.set()
    done, _pending = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
