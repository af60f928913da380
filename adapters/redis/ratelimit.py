"""Rate limits shared by every process, kept in Redis.

The hits asked for in one turn of the event loop (frames from several
sockets that were read together) go to Redis as one script call: one round
trip and one command for the lot, where each hit was a round trip of its
own. Redis runs a script alone, so hits on a shared key (an IP's sockets)
are counted in order, exactly as separate calls were. The call goes on a
connection of the limiter's own, written at once (adapters/redis/pipe.py),
where Redis is reached over plain TCP; through redis-py otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.redis.pipe import ScriptPipe
from core.ratelimit import Limit, MemoryRateLimiter

log = logging.getLogger(__name__)

# Sliding-window logs in sorted sets, one per key. For each hit, in order: drop its
# keys' old hits and count them; if every key is under its limit, add the hit to all
# of them and answer "", else answer the longest wait. ARGV: now, then per hit its
# member and key count, then (window, limit) per key; KEYS: every hit's keys in turn.
_HIT_MANY = """
local now = tonumber(ARGV[1])
local answers = {}
local a, k = 2, 1
while a <= #ARGV do
  local member, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local wait = nil
  for i = 0, n - 1 do
    local key = KEYS[k + i]
    local window, limit = tonumber(ARGV[a + 2 * i]), tonumber(ARGV[a + 2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) >= limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local left = tonumber(oldest[2]) + window - now
      if wait == nil or left > wait then wait = left end
    end
  end
  if wait == nil then
    for i = 0, n - 1 do
      local window = tonumber(ARGV[a + 2 * i])
      redis.call('ZADD', KEYS[k + i], now, member)
      redis.call('PEXPIRE', KEYS[k + i], math.ceil(window * 1000))
    end
    answers[#answers + 1] = ''
  else
    answers[#answers + 1] = tostring(wait)
  end
  a, k = a + 2 * n, k + n
end
return answers
"""


class _Hit:
    """One ``hit_all`` waiting for this turn's script call."""

    __slots__ = ("limits", "member", "answer")

    def __init__(self, limits: Sequence[Limit], member: str, answer: "asyncio.Future[float | None]") -> None:
        self.limits = limits
        self.member = member
        self.answer = answer


class RedisRateLimiter:
    """Holds limits across processes; falls back to this process's memory if Redis fails,
    so an outage loosens limits slightly instead of refusing every visitor."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "deskbell:rl:") -> None:
        self._redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_HIT_MANY)
        self.pipe = ScriptPipe.of(redis, _HIT_MANY)  # None: through redis-py (TLS, Unix socket)
        self._fallback = MemoryRateLimiter()
        self._counter = 0
        self._waiting: list[_Hit] = []  # this turn's hits, sent by _flush
        self._sending: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.calls = 0  # script calls made (tests look at it)

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        return await self.hit_all([(key, limit, window_s)])

    async def hit_all(self, limits: Sequence[Limit]) -> float | None:
        loop = asyncio.get_running_loop()
        self._counter += 1
        hit = _Hit(limits, f"{time.time()}:{self._counter}:{id(self)}", loop.create_future())
        if not self._waiting:
            # call_soon: after every callback already ready in this turn, so the frames
            # read together go together.
            loop.call_soon(self._flush)
        self._waiting.append(hit)
        # Each hit has its own future: a caller cancelled while waiting cancels only its
        # own, which the answers then skip. Its hit may still be counted, as a hit sent
        # just before a cancel always could be.
        return await hit.answer

    async def close(self) -> None:
        """Closes the limiter's own connection (the redis-py client is its owner's to close)."""
        if self.pipe is not None:
            self.pipe.close()

    def _flush(self) -> None:
        hits, self._waiting = self._waiting, []
        keys: list[str] = []
        args: list[Any] = [time.time()]
        for hit in hits:
            args += [hit.member, len(hit.limits)]
            for key, limit, window_s in hit.limits:
                keys.append(self.prefix + key)
                args += [window_s, limit]
        self.calls += 1
        reply = self.pipe.call_now(keys, args) if self.pipe is not None else None
        if reply is not None:  # the common case: no task, the reply settles the hits
            reply.add_done_callback(lambda done: self._settle(hits, done))
            return
        self._track(self._send(hits, keys, args))

    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _settle(self, hits: list[_Hit], reply: "asyncio.Future[Any]") -> None:
        exc = reply.exception()
        if exc is None:
            self._answer(hits, reply.result())
        elif isinstance(exc, (RedisError, OSError)):
            self._track(self._fall_back(hits, exc))
        else:
            self._fail(hits, exc)

    async def _send(self, hits: list[_Hit], keys: list[str], args: list[Any]) -> None:
        try:
            if self.pipe is not None:
                answers = await self.pipe.call(keys, args)
            else:
                answers = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            await self._fall_back(hits, exc)
            return
        except BaseException as exc:  # cancelled at shutdown, or a bug: no caller waits forever
            self._fail(hits, exc if isinstance(exc, Exception) else RedisError("rate limit call cancelled"))
            raise
        self._answer(hits, answers)

    async def _fall_back(self, hits: list[_Hit], exc: BaseException) -> None:
        log.warning("redis rate limit unavailable (%s); using local limits", type(exc).__name__)
        for hit in hits:
            if not hit.answer.done():
                hit.answer.set_result(await self._fallback.hit_all(hit.limits))

    @staticmethod
    def _fail(hits: list[_Hit], exc: Exception) -> None:
        for hit in hits:
            if not hit.answer.done():
                hit.answer.set_exception(exc)

    @staticmethod
    def _answer(hits: list[_Hit], answers: list[Any]) -> None:
        for hit, answer in zip(hits, answers):
            if not hit.answer.done():
                text = answer.decode() if isinstance(answer, bytes) else answer
                hit.answer.set_result(max(0.001, float(text)) if text else None)
        for hit in hits[len(answers):]:  # never expected; but no caller may wait forever
            if not hit.answer.done():
                hit.answer.set_exception(RedisError(f"rate limit script answered {len(answers)} of {len(hits)} hits"))
