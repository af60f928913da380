"""The Redis rate limiter sends the hits of one event-loop turn in one script call,
and counts them exactly as separate calls would: on its own connection (plain TCP)
and through redis-py (TLS, Unix sockets) alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis.ratelimit import RedisRateLimiter

PATHS = pytest.mark.parametrize("own_connection", [True, False], ids=["own-connection", "redis-py"])


@asynccontextmanager
async def _limiter(redis_url: str, own_connection: bool, **options: Any) -> AsyncIterator[RedisRateLimiter]:
    redis = aioredis.Redis.from_url(redis_url, **options)
    limiter = RedisRateLimiter(redis, prefix=f"test{os.getpid()}:{id(redis)}:rl:")
    assert limiter.pipe is not None
    if not own_connection:
        limiter.pipe = None
    try:
        yield limiter
    finally:
        await limiter.close()
        await redis.aclose()


@PATHS
async def test_hits_of_one_turn_make_one_call_and_share_a_key_in_order(redis_url, own_connection):
    async with _limiter(redis_url, own_connection) as limiter:
        # Five sockets of one IP send in the same turn; the IP may send 3 a minute.
        answers = await asyncio.gather(
            *(limiter.hit_all([(f"conn:{n}", 10, 60), ("ip:1", 3, 60)]) for n in range(5))
        )
        assert limiter.calls == 1
        assert answers[:3] == [None, None, None]
        assert all(wait is not None and 0 < wait <= 60 for wait in answers[3:])
        # The refused two were not counted under their connections either.
        assert await limiter.hit_all([("conn:3", 1, 60)]) is None
        assert await limiter.hit_all([("conn:4", 1, 60)]) is None
        assert await limiter.hit_all([("conn:0", 1, 60)]) is not None
        assert limiter.calls == 4


@PATHS
async def test_a_hit_with_no_limit_reached_in_a_mixed_batch_is_allowed(redis_url, own_connection):
    async with _limiter(redis_url, own_connection) as limiter:
        assert await limiter.hit("busy", 1, 60) is None
        busy, quiet = await asyncio.gather(limiter.hit("busy", 1, 60), limiter.hit("quiet", 1, 60))
        assert busy is not None and quiet is None


@PATHS
async def test_redis_away_falls_back_to_this_process_limits(own_connection):
    async with _limiter("redis://127.0.0.1:1", own_connection, socket_connect_timeout=0.5) as limiter:
        answers = await asyncio.gather(*(limiter.hit("k", 2, 60) for _ in range(3)))
        assert answers[:2] == [None, None] and answers[2] is not None


@PATHS
async def test_a_caller_cancelled_while_waiting_leaves_the_others_their_answers(redis_url, own_connection):
    async with _limiter(redis_url, own_connection) as limiter:
        await limiter.hit("warm", 100, 60)  # the connection is up: the next call is written at once
        tasks = [asyncio.ensure_future(limiter.hit(f"k{n}", 1, 60)) for n in range(3)]
        await asyncio.sleep(0)  # all three are waiting on this turn's call
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], asyncio.CancelledError)
        assert limiter.calls == 2
