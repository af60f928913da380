"""Redis connections of our own (adapters/redis/pipe.py), the rate limiter's and the bus's: calls written
back to back, each reply matched to its call in order, losses and bad credentials
reported as Redis errors so the limiter falls back, and redis-py for what it does not speak."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from adapters.redis.ratelimit import RedisRateLimiter
from adapters.redis.pipe import CommandPipe, ScriptPipe, encode, parse

ECHO = "return ARGV"  # answers each call with its own arguments

P = TypeVar("P", bound=CommandPipe)


@asynccontextmanager
async def _pipe_and_key(pipe: P | None, redis_url: str, name: str) -> AsyncIterator[tuple[P, str]]:
    """``pipe`` (it must exist: the URL is plain TCP) and a key of this test's own; both gone after."""
    assert pipe is not None
    key = f"test{os.getpid()}:pipe:{name}"
    try:
        yield pipe, key
    finally:
        pipe.close()
        redis = aioredis.Redis.from_url(redis_url)
        await redis.delete(key)
        await redis.aclose()


def test_every_reply_kind_parses_only_once_it_has_all_arrived() -> None:
    wire = b"+OK\r\n-ERR bad\r\n:42\r\n$-1\r\n$5\r\nhe\r\nl\r\n*3\r\n$1\r\na\r\n$0\r\n\r\n*1\r\n:7\r\n*-1\r\n"
    expected = [b"OK", "ERR bad", 42, None, b"he\r\nl", [b"a", b"", [7]], None]
    replies, start = [], 0
    while start < len(wire):
        found = parse(wire, start)
        assert found is not None
        reply, end = found
        for cut in range(start, end):  # any shorter piece of it is "not yet"
            assert parse(wire[:cut], start) is None
        replies.append(str(reply) if isinstance(reply, ResponseError) else reply)
        start = end
    assert replies == expected
    for garbage in (b"?what\r\n", b"$five\r\n", b"*2\r\n:x\r\n"):
        with pytest.raises(RedisConnectionError):
            parse(garbage)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode(["EVAL", b"return 1", 0, 1.5]) == b"*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n$3\r\n1.5\r\n"


async def test_calls_written_together_get_their_own_replies_in_order(redis_url: str) -> None:
    pipe = ScriptPipe.of(aioredis.Redis.from_url(redis_url), ECHO)
    assert pipe is not None
    try:
        first = await pipe.call([], ["warm"])  # connects
        answers = [pipe.call_now([], [n, "x" * n]) for n in range(200)]
        assert all(answer is not None for answer in answers)
        results = await asyncio.gather(*answers)  # type: ignore[arg-type]
        assert first == [b"warm"]
        assert results == [[str(n).encode(), b"x" * n] for n in range(200)]
        assert pipe.connections == 1
    finally:
        pipe.close()


async def test_commands_sent_together_go_in_one_write_and_an_error_raises_once_all_are_read(redis_url: str) -> None:
    async with _pipe_and_key(CommandPipe.of(aioredis.Redis.from_url(redis_url)), redis_url, "all") as (pipe, key):
        assert await pipe.send_all([("SET", key, "1"), ("INCR", key), ("GET", key)]) == [b"OK", 2, b"2"]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.send_all([("INCR", key), ("LPUSH", key, "x"), ("INCR", key)])
        assert await pipe.send(("GET", key)) == b"4"  # both INCRs ran; the connection is still in step
        assert pipe.connections == 1


async def test_an_error_reply_fails_its_own_call_only(redis_url: str) -> None:
    incrby = ScriptPipe.of(aioredis.Redis.from_url(redis_url), "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    async with _pipe_and_key(incrby, redis_url, "errors") as (pipe, key):
        await pipe.call([key], [1])
        good, bad, after = pipe.call_now([key], [1]), pipe.call_now([key], ["not a number"]), pipe.call_now([key], [1])
        assert good is not None and bad is not None and after is not None
        assert await good == 2
        with pytest.raises(ResponseError):
            await bad
        assert await after == 3


async def test_a_lost_connection_fails_the_calls_in_flight_and_the_next_call_reconnects(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    pipe = ScriptPipe.of(redis, ECHO)
    assert pipe is not None
    try:
        assert await pipe.call([], ["first"]) == [b"first"]
        replies = pipe._replies
        assert replies is not None and replies.transport is not None
        host, port = replies.transport.get_extra_info("sockname")[:2]
        # Redis drops the connection (as a restart would).
        await redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        for _ in range(100):
            if replies.lost:
                break
            await asyncio.sleep(0.01)
        assert replies.lost
        assert pipe.call_now([], ["meanwhile"]) is None  # nothing is written on a lost connection
        assert await pipe.call([], ["again"]) == [b"again"]
        assert pipe.connections == 2
        # A call whose reply had not come when the connection broke fails with it.
        in_flight = pipe.call_now([], ["unanswered"])
        assert in_flight is not None and pipe._replies is not None and pipe._replies.transport is not None
        pipe._replies.transport.abort()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(in_flight, 5)
    finally:
        pipe.close()
        await redis.aclose()


async def test_a_password_and_database_are_used_and_a_wrong_one_falls_back(redis_url: str) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    user, password = f"deskbell-test-{os.getpid()}", "s3cret-pw"
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    host = redis_url.split("//", 1)[1].split("/", 1)[0]
    key = f"test{os.getpid()}:pipe:db"
    try:
        client = aioredis.Redis.from_url(f"redis://{user}:{password}@{host}/3")
        limiter = RedisRateLimiter(client, prefix=f"test{os.getpid()}:rl:")
        assert limiter.pipe is not None
        assert await limiter.hit("auth", 1, 60) is None
        assert await limiter.hit("auth", 1, 60) is not None
        assert limiter.pipe.connections == 1
        in_db3 = aioredis.Redis.from_url(f"redis://{host}/3")
        assert await in_db3.exists(f"test{os.getpid()}:rl:auth") == 1
        assert await admin.exists(f"test{os.getpid()}:rl:auth") == 0  # not in database 0
        await in_db3.delete(f"test{os.getpid()}:rl:auth", key)
        await in_db3.aclose()
        await limiter.close()
        await client.aclose()

        wrong = aioredis.Redis.from_url(f"redis://{user}:wrong@{host}/0")
        limiter = RedisRateLimiter(wrong, prefix=f"test{os.getpid()}:rl:")
        # Redis refuses the login; the limiter counts in this process instead.
        assert [await limiter.hit("k", 1, 60) for _ in range(2)][1] is not None
        assert limiter.pipe is not None and limiter.pipe.connections == 0
        await wrong.aclose()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


def test_tls_and_unix_sockets_stay_with_redis_py() -> None:
    assert ScriptPipe.of(aioredis.Redis.from_url("rediss://127.0.0.1:6380/0"), ECHO) is None
    assert ScriptPipe.of(aioredis.Redis.from_url("unix:///tmp/redis.sock"), ECHO) is None
    assert ScriptPipe.of(aioredis.Redis.from_url("redis://127.0.0.1:6379/0"), ECHO) is not None


async def test_a_reply_that_cannot_be_read_fails_the_calls_and_drops_the_connection() -> None:
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"$not-a-length\r\n")
        await writer.drain()
        await reader.read(1024)  # until the client drops the connection
        writer.close()

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = ScriptPipe(ECHO, "127.0.0.1", port, username=None, password=None, db=0)
    try:
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(pipe.call([], ["x"]), 5)
        assert pipe.call_now([], ["y"]) is None  # that connection is not used again
    finally:
        pipe.close()
        server.close()
        await server.wait_closed()
