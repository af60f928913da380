"""Rate limits. The port is async so a Redis implementation can share counts
between processes; :class:`MemoryRateLimiter` serves a single process."""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one event; return seconds to wait if over ``limit`` per window, else None."""
        ...


class MemoryRateLimiter:
    """Sliding-window log per key, bounded in memory by pruning idle keys."""

    def __init__(self, clock: "callable[[], float] | None" = None, max_keys: int = 100_000) -> None:
        self._clock = clock or time.monotonic
        self._hits: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._prune(now, window_s)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        if len(hits) >= limit:
            return max(0.001, hits[0] + window_s - now)
        hits.append(now)
        return None

    def _prune(self, now: float, window_s: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - window_s]:
            del self._hits[key]
