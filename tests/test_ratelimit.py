"""This process's rate limits (a single process, or Redis away)."""

from __future__ import annotations

from core.ratelimit import MemoryRateLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_limit_refuses_past_its_count_and_frees_up_as_the_window_slides() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert await limiter.hit("k", 2, 60) is None
    clock.now += 10
    assert await limiter.hit("k", 2, 60) is None
    assert await limiter.hit("k", 2, 60) == 50.0  # the first hit leaves the window in 50 s
    clock.now += 50
    assert await limiter.hit("k", 2, 60) is None


async def test_an_event_under_several_limits_counts_under_all_or_none() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    both = [("conn", 3, 60), ("ip", 1, 30)]
    assert await limiter.hit_all(both) is None
    clock.now += 5
    assert await limiter.hit_all(both) == 25.0  # the IP's limit: the longest wait wins
    # Refused, so the connection's count did not move: two more fit under its limit of 3.
    assert await limiter.hit_all([("conn", 3, 60)]) is None
    assert await limiter.hit_all([("conn", 3, 60)]) is None
    assert await limiter.hit_all([("conn", 3, 60)]) == 55.0


async def test_idle_keys_are_pruned_without_losing_the_hit_being_counted() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock, max_keys=2)
    assert await limiter.hit("old", 1, 10) is None
    clock.now += 20  # "old" is idle now
    assert await limiter.hit_all([("conn", 1, 10), ("ip", 1, 10)]) is None
    assert await limiter.hit("conn", 1, 10) == 10.0  # counted, though pruning ran meanwhile
    assert await limiter.hit("ip", 1, 10) == 10.0
    assert "old" not in limiter._hits


def test_a_sockets_own_window_checks_then_counts_and_follows_a_changed_limit() -> None:
    clock = Clock()
    window = SlidingWindow(60, clock)
    assert window.wait(2) is None
    window.count()
    clock.now += 10
    assert window.wait(2) is None
    assert window.wait(2) is None  # checking alone counts nothing (a shared limit may still refuse)
    window.count()
    assert window.wait(2) == 50.0  # the first line leaves the window in 50 s
    assert window.wait(1) == 60.0  # a lower limit: the newest line must leave
    assert window.wait(3) is None
    clock.now += 50
    assert window.wait(2) is None
