"""Rate limits. The port is async so a Redis implementation can share counts
between processes; :class:`MemoryRateLimiter` serves a single process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

Limit = tuple[str, int, float]  # (key, limit, window in seconds)


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one event; return seconds to wait if over ``limit`` per window, else None."""
        ...

    async def hit_all(self, limits: Sequence[Limit]) -> float | None:
        """One event under several limits (a form's IP and its widget, say): counted under
        every key if all allow it, else under none; returns the longest wait, or None.

        One call, so a shared store answers it in one round trip."""
        ...


class MemoryRateLimiter:
    """Sliding-window log per key, bounded in memory by pruning idle keys."""

    def __init__(self, clock: "callable[[], float] | None" = None, max_keys: int = 100_000) -> None:
        self._clock = clock or time.monotonic
        self._hits: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        return await self.hit_all([(key, limit, window_s)])

    async def hit_all(self, limits: Sequence[Limit]) -> float | None:
        now = self._clock()
        if len(self._hits) >= self._max_keys:  # before taking any key's log: pruning may drop it
            self._prune(now, max(window_s for _, _, window_s in limits))
        logs = [self._log(key, window_s, now) for key, _, window_s in limits]
        wait = max(
            (hits[0] + window_s - now for hits, (_, limit, window_s) in zip(logs, limits) if len(hits) >= limit),
            default=None,
        )
        if wait is not None:
            return max(0.001, wait)
        for hits in logs:
            hits.append(now)
        return None

    def _log(self, key: str, window_s: float, now: float) -> deque[float]:
        """``key``'s hits within the window (older ones dropped)."""
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - window_s:
            hits.popleft()
        return hits

    def _prune(self, now: float, window_s: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - window_s]:
            del self._hits[key]


class SlidingWindow:
    """The sliding-window log of one thing that lives in one process (a socket), kept by
    its owner.

    A connection's limit needs no shared store, and a key naming it there would be
    wrong: ``id()`` of an object is unique only within one process and one object's
    lifetime, so two processes' sockets, or a closed socket and its successor, could
    share a count. Checked and counted in two steps, so a hit refused by a shared
    limit checked in between is counted nowhere; the owner must not check twice
    concurrently (a socket handles its frames one at a time).
    """

    __slots__ = ("window_s", "_hits", "_clock")

    def __init__(self, window_s: float, clock: "callable[[], float] | None" = None) -> None:
        self.window_s = window_s
        self._hits: deque[float] = deque()
        self._clock = clock or time.monotonic

    def wait(self, limit: int) -> float | None:
        """Seconds until one more hit is allowed under ``limit`` per window, or None if it is now."""
        now = self._clock()
        hits = self._hits
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) < limit:
            return None
        if not hits:  # a limit below 1 allows nothing
            return self.window_s
        return max(0.001, hits[-limit] + self.window_s - now)

    def count(self) -> None:
        self._hits.append(self._clock())
