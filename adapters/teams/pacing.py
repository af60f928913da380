"""Pace sends per channel: Teams allows a bot 7 messages per second, 8 per 2
seconds and 60 per 30 seconds in one conversation, and answers 429 beyond that.

A GCRA token bucket per channel; :meth:`Pacer.reserve` is pure given a
clock (tested without sleeping), :meth:`Pacer.wait` sleeps the delay. One
process (the worker) posts, so in-process state is enough; a 429 that still
happens is honoured through the outbox's ``retry_after``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Pacer:
    def __init__(self, per_second: float = 1.8, burst: int = 4, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.burst = max(1, burst)
        self.clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next send, per key

    def reserve(self, key: str) -> float:
        """Take a slot for one send to ``key``; return the seconds to wait before sending."""
        if self.interval == 0:
            return 0.0
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        delay = max(0.0, tat - (self.burst - 1) * self.interval - now)
        self._tat[key] = tat + self.interval
        if len(self._tat) > 10_000:  # forget idle keys
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return delay

    async def wait(self, key: str) -> None:
        delay = self.reserve(key)
        if delay > 0:
            await asyncio.sleep(delay)
