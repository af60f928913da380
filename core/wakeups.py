"""Waiting for a wake-up call or a deadline, whichever comes first, and staying cancellable.

Loops that sleep until poked (the status watcher, the widget hub's catch-up) wait on an
``asyncio.Event`` with a timeout. ``asyncio.wait_for(event.wait(), timeout)`` does not
do for them on Python 3.11: a cancellation that arrives as the event is set is swallowed
(the inner wait has finished, so ``wait_for`` returns its result), and the loop goes round
and waits again. The status watcher, cancelled as the app shut down just when an agent's
change poked it, then slept its full 300 s and held the shutdown up (seen in the tests).
``asyncio.timeout`` runs no inner task: a cancellation reaches the waiting task itself.
"""

from __future__ import annotations

import asyncio


async def wait_for_wake(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds have passed; whether it is set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
