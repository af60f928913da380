"""Pace posts per channel: Slack allows about one message per second per channel,
with short bursts, and answers 429 beyond that.

A token bucket per channel; :meth:`ChannelPacer.reserve` is pure given a
clock (tested without sleeping), :meth:`ChannelPacer.wait` sleeps the delay.
One process (the worker) posts, so in-process state is enough; a 429 that
still happens is honoured through the outbox's ``retry_after``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ChannelPacer:
    def __init__(self, per_second: float = 1.0, burst: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.burst = max(1, burst)
        self.clock = clock
        self._next_free: dict[str, float] = {}  # when the bucket of a channel is full again, minus burst

    def reserve(self, channel: str) -> float:
        """Take a slot for one post in ``channel``; return the seconds to wait before posting."""
        if self.interval == 0:
            return 0.0
        now = self.clock()
        # The theoretical arrival time (GCRA): a post may go when tat - burst*interval <= now.
        tat = max(self._next_free.get(channel, now), now)
        allowed_at = tat - (self.burst - 1) * self.interval
        delay = max(0.0, allowed_at - now)
        self._next_free[channel] = tat + self.interval
        if len(self._next_free) > 10_000:  # forget idle channels
            self._next_free = {k: v for k, v in self._next_free.items() if v > now}
        return delay

    async def wait(self, channel: str) -> None:
        delay = self.reserve(channel)
        if delay > 0:
            await asyncio.sleep(delay)
