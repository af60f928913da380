"""Redis commands on a connection of our own, written back to back.

The rate limiter asks Redis once per event-loop turn that read frames, and the
event bus publishes once per turn that committed lines. Through redis-py a
command took about 260 µs of the web process's CPU (taking a connection from
the pool, building the command, parsing the reply, giving the connection
back), and the task that awaited it more; Redis itself answers in
microseconds. Here a command is one ``transport.write`` and one future:
replies come back in the order the commands were written (Redis answers a
connection's commands in order), so each resolves the oldest waiting future.
About 90 µs a script call, measured the same way (2,000 calls, one process).

Only for a plain TCP connection (what ``redis://`` URLs give), with the
client's own user, password and database: TLS and Unix sockets keep going
through redis-py (:meth:`CommandPipe.of` returns None for them). A script
call uses ``EVAL`` with the script's text, so a Redis that restarted or
flushed its scripts needs nothing resent. Replies are RESP2.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

CONNECT_TIMEOUT_S = 5.0

Reply = Any  # bytes | int | list | None, or a ResponseError for an error reply


def encode(args: Sequence[Any]) -> bytes:
    """A command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Reply, int] | None:
    """The RESP2 reply at ``start`` and where it ends, or None if it has not all arrived."""
    try:
        return _parse(buffer, start)
    except ValueError as exc:  # a length or number that is not one
        raise RedisConnectionError(f"unreadable reply from Redis ({exc})") from exc


def _parse(buffer: bytes | bytearray, start: int) -> tuple[Reply, int] | None:
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : end])
    after = end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return ResponseError(line.decode(errors="replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return None
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            found = _parse(buffer, after)
            if found is None:
                return None
            item, after = found
            items.append(item)
        return items, after
    raise RedisConnectionError(f"unexpected reply from Redis: {bytes(buffer[start:end])[:40]!r}")


class _Replies(asyncio.Protocol):
    """Matches each reply on the connection to the oldest call still waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        self.buffer = bytearray()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        start = 0
        try:
            while self.waiting:
                found = parse(self.buffer, start)
                if found is None:
                    break
                reply, start = found
                answer = self.waiting.popleft()
                if answer.done():  # its caller was cancelled
                    continue
                if isinstance(reply, ResponseError):
                    answer.set_exception(reply)
                else:
                    answer.set_result(reply)
        except RedisConnectionError as exc:  # out of step with Redis: nothing after this can be matched
            self._fail(exc)
            if self.transport is not None:
                self.transport.abort()
            return
        del self.buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})"))

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        while self.waiting:
            answer = self.waiting.popleft()
            if not answer.done():
                answer.set_exception(exc)


class CommandPipe:
    """Commands on one connection of its own; reconnects on the next command after a loss."""

    def __init__(self, host: str, port: int, *, username: str | None, password: str | None, db: int) -> None:
        self.host, self.port = host, port
        self._hello = [
            *([["AUTH", *([username] if username else []), password]] if password else []),
            *([["SELECT", db]] if db else []),
        ]
        self._replies: _Replies | None = None
        self._connecting: asyncio.Future[_Replies] | None = None
        self.connections = 0  # connections opened (tests look at it)

    @staticmethod
    def _address(redis: aioredis.Redis) -> dict[str, Any] | None:
        """Where and as whom ``redis`` connects, or None unless that is plain TCP."""
        pool = redis.connection_pool
        if pool.connection_class is not aioredis.Connection:  # TLS, a Unix socket, or a subclass
            return None
        kw = pool.connection_kwargs
        return {
            "host": kw.get("host", "localhost"), "port": int(kw.get("port", 6379)),
            "username": kw.get("username"), "password": kw.get("password"), "db": int(kw.get("db") or 0),
        }

    @classmethod
    def of(cls, redis: aioredis.Redis) -> "CommandPipe | None":
        """A pipe to the server ``redis`` talks to, or None unless that is plain TCP."""
        address = cls._address(redis)
        return None if address is None else cls(**address)

    def send_now(self, command: Sequence[Any]) -> "asyncio.Future[Reply] | None":
        """The command's reply, written at once if the connection is up; None if it is not."""
        replies = self._live()
        return None if replies is None else self._write(replies, command)

    async def send(self, command: Sequence[Any]) -> Reply:
        """The command's reply; connects first if needed. Raises RedisError or OSError."""
        answer = self.send_now(command)
        if answer is None:
            answer = self._write(await self._connect(), command)
        return await answer

    async def send_all(self, commands: Sequence[Sequence[Any]]) -> list[Reply]:
        """Every command in one write; their replies. Raises the first error among them,
        once every reply is in (none is left unread)."""
        replies = self._live() or await self._connect()
        answers = [self._expect(replies) for _ in commands]
        assert replies.transport is not None
        replies.transport.write(b"".join(encode(command) for command in commands))
        results: list[Reply] = []
        error: Exception | None = None
        for answer in answers:
            try:
                results.append(await answer)
            except Exception as exc:  # an error reply, or the connection lost
                error = error or exc
        if error is not None:
            raise error
        return results

    def close(self) -> None:
        if self._replies is not None and self._replies.transport is not None:
            self._replies.transport.close()
        self._replies = None

    def _live(self) -> _Replies | None:
        replies = self._replies
        if replies is None or replies.lost or replies.transport is None or replies.transport.is_closing():
            return None
        return replies

    @staticmethod
    def _expect(replies: _Replies) -> "asyncio.Future[Reply]":
        answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        replies.waiting.append(answer)
        return answer

    def _write(self, replies: _Replies, command: Sequence[Any]) -> "asyncio.Future[Reply]":
        answer = self._expect(replies)
        assert replies.transport is not None
        replies.transport.write(encode(command))
        return answer

    async def _connect(self) -> _Replies:
        if self._connecting is None or self._connecting.done():  # one attempt for every call waiting
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        _, replies = await asyncio.wait_for(
            loop.create_connection(_Replies, self.host, self.port), CONNECT_TIMEOUT_S
        )
        try:
            for command in self._hello:  # a wrong password or database fails here, with Redis's words
                await asyncio.wait_for(self._write(replies, command), CONNECT_TIMEOUT_S)
        except BaseException:
            assert replies.transport is not None
            replies.transport.close()
            raise
        self.connections += 1
        self._replies = replies
        return replies


class ScriptPipe(CommandPipe):
    """Calls of one Lua script (``EVAL``) on a pipe of its own."""

    def __init__(self, script: str, host: str, port: int, *, username: str | None, password: str | None, db: int) -> None:
        super().__init__(host, port, username=username, password=password, db=db)
        self.script = script.encode()

    @classmethod
    def of(cls, redis: aioredis.Redis, script: str) -> "ScriptPipe | None":  # type: ignore[override]
        """A pipe to the server ``redis`` talks to, or None unless that is plain TCP."""
        address = cls._address(redis)
        return None if address is None else cls(script, **address)

    def call_now(self, keys: Sequence[str], args: Sequence[Any]) -> "asyncio.Future[Reply] | None":
        """The call's reply, written at once if the connection is up; None if it is not."""
        return self.send_now(self._eval(keys, args))

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Reply:
        """The script's reply; connects first if needed. Raises RedisError or OSError."""
        return await self.send(self._eval(keys, args))

    def _eval(self, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        return ["EVAL", self.script, len(keys), *keys, *args]
