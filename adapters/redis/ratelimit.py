"""Rate limits shared by every process, kept in Redis."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.ratelimit import MemoryRateLimiter

log = logging.getLogger(__name__)

# Sliding-window log in a sorted set: drop old hits, count, add if under the limit.
_HIT = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return false
"""


class RedisRateLimiter:
    """Holds limits across processes; falls back to this process's memory if Redis fails,
    so an outage loosens limits slightly instead of refusing every visitor."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "deskbell:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_HIT)
        self._fallback = MemoryRateLimiter()
        self._counter = 0

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        self._counter += 1
        now = time.time()
        try:
            wait = await self._script(
                keys=[self._prefix + key], args=[now, window_s, limit, f"{now}:{self._counter}:{id(self)}"]
            )
        except (RedisError, OSError) as exc:
            log.warning("redis rate limit unavailable (%s); using local limits", type(exc).__name__)
            return await self._fallback.hit(key, limit, window_s)
        if wait is None:
            return None
        return max(0.001, float(wait))
