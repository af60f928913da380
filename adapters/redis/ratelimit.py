"""Rate limits shared by every process, kept in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.ratelimit import Limit, MemoryRateLimiter

log = logging.getLogger(__name__)

# Sliding-window logs in sorted sets, one per key: drop each key's old hits and count
# them; if every key is under its limit, add the hit to all of them, else return the
# longest wait. ARGV: now, member, then (window, limit) per key.
_HIT = """
local now, member = tonumber(ARGV[1]), ARGV[2]
local wait = nil
for i, key in ipairs(KEYS) do
  local window, limit = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local left = tonumber(oldest[2]) + window - now
    if wait == nil or left > wait then wait = left end
  end
end
if wait ~= nil then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[1 + 2 * i]) * 1000))
end
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
        return await self.hit_all([(key, limit, window_s)])

    async def hit_all(self, limits: Sequence[Limit]) -> float | None:
        self._counter += 1
        now = time.time()
        args: list[Any] = [now, f"{now}:{self._counter}:{id(self)}"]
        for _, limit, window_s in limits:
            args += [window_s, limit]
        try:
            wait = await self._script(keys=[self._prefix + key for key, _, _ in limits], args=args)
        except (RedisError, OSError) as exc:
            log.warning("redis rate limit unavailable (%s); using local limits", type(exc).__name__)
            return await self._fallback.hit_all(limits)
        if wait is None:
            return None
        return max(0.001, float(wait))
