"""The Redis event bus (adapters/redis/bus.py) against the local Redis."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio as aioredis

from adapters.redis.bus import RedisBus


async def _reads(admin: aioredis.Redis) -> int:
    return int((await admin.info("stats"))["total_reads_processed"])


async def test_events_raised_in_one_turn_reach_redis_in_one_write_and_arrive_in_order(redis_url: str) -> None:
    """The lines of one group commit each publish an event in the same turn of the loop:
    Redis reads them in one go (one pipeline), and another process gets every one, in order."""
    channel = f"test{os.getpid()}:bus-batch"
    sender, receiver = RedisBus(redis_url, channel=channel), RedisBus(redis_url, channel=channel)
    got: list[int] = []

    async def on_created(_name: str, data: dict[str, Any]) -> None:
        got.append(data["i"])

    receiver.subscribe("message.created", on_created)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await receiver.start()
        await sender.start()
        await sender.publish("message.created", {"i": -1})  # the sender's connection is open
        await _wait_for(lambda: got == [-1])
        before = await _reads(admin)
        await asyncio.gather(*(sender.publish("message.created", {"i": i}) for i in range(20)))
        reads = await _reads(admin) - before  # the INFO asking counts as one
        await _wait_for(lambda: len(got) == 21)
        assert got == [-1, *range(20)]
        assert reads <= 4, reads  # one per event (21) before they went together
        # A publisher that awaits each event still sends each at once.
        await sender.publish("message.created", {"i": 20})
        await _wait_for(lambda: got[-1] == 20)
    finally:
        await sender.close()
        await receiver.close()
        await admin.aclose()


async def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
