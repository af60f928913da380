"""The event bus across processes, over Redis pub/sub.

Events are delivered to this process's handlers at once and published for
the other processes, which skip their own. Pub/sub is at-most-once: while
the connection is down events are missed, so on reconnect a ``bus.resync``
event tells local subscribers to catch up from the database (the truth).

Publishes raised in the same turn of the event loop (the lines of one
group commit, each announcing itself) go to Redis together: one message per
channel, holding the turn's events of that name in order (``"ds"``), in one
pipeline. One write instead of one per event, for this process and for
Redis, and every subscriber reads and parses one message for the lot. Under
CPU contention every write to another process was a chance to be
descheduled (bench/RESULTS.md).

A message starts with its publisher's origin (``{"o":"..."``), so a process
drops its own messages, most of what a lone web process hears, without
parsing them.

Publishes go on a connection of the bus's own (adapters/redis/pipe.py): the
turn's messages in one write, without redis-py's pool and pipeline objects
around them (about 5 % of a web process's samples under the relay benchmark).
TLS and Unix-socket URLs publish through redis-py as before.

Each event name has its own channel (``{channel}:{name}``), and a process
subscribes to the names it has handlers for: a worker has no visitor
sockets, so it does not hear the visitors' lines (a tenth of its CPU went
to reading and dropping them, 300 a second in the relay benchmark). It also
listens on ``{channel}`` itself, where earlier versions published every
event (so it hears them during an upgrade); that subscription's
confirmation after a dropped connection is the signal to resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.redis.pipe import CommandPipe
from core import events as ev
from core.events import Handler, LocalBus

log = logging.getLogger(__name__)

CHANNEL = "deskbell:events"
# Events that only matter inside the process that raised them.
LOCAL_ONLY = {ev.RESYNC}


class _PublishBatch:
    """Events waiting for the end of this turn of the event loop, as (channel, payload), and
    the future their publishers wait on."""

    __slots__ = ("payloads", "sent")

    def __init__(self, sent: "asyncio.Future[None]") -> None:
        self.payloads: list[tuple[str, str]] = []  # (event name, its data as JSON)
        self.sent = sent

    def messages(self, origin: str, channel_of: Callable[[str], str]) -> list[tuple[str, str]]:
        """(channel, message) to publish: one per event name, its events in order."""
        by_name: dict[str, list[str]] = {}
        for name, data in self.payloads:
            by_name.setdefault(name, []).append(data)
        head = f'{{"o":"{origin}","n":'
        return [
            (channel_of(name), f'{head}{json.dumps(name)},"d":{datas[0]}}}' if len(datas) == 1
             else f'{head}{json.dumps(name)},"ds":[{",".join(datas)}]}}')
            for name, datas in by_name.items()
        ]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class RedisBus:
    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self.origin = secrets.token_hex(8)
        self._own = f'{{"o":"{self.origin}"'.encode()  # how this process's own messages start
        self.local = LocalBus()
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=15)
        self.pipe = CommandPipe.of(self.redis)  # None: publishes go through redis-py (TLS, Unix socket)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False
        self._outgoing: _PublishBatch | None = None
        self._sending: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._names: set[str] = set()  # event names this process has handlers for
        self._pubsub: Any = None  # the listening subscription, while it runs
        self.heard = 0  # events read from Redis, this process's own included (tests look at it)

    def channel_of(self, name: str) -> str:
        """The channel events called ``name`` travel on."""
        return f"{self.channel}:{name}"

    def subscribe(self, name: str, handler: Handler) -> None:
        self.local.subscribe(name, handler)
        if name in LOCAL_ONLY or name in self._names:
            return
        self._names.add(name)
        if self._pubsub is not None:  # listening already: add the channel now
            task = asyncio.ensure_future(self._subscribe_late(self._pubsub, name))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _subscribe_late(self, pubsub: Any, name: str) -> None:
        try:
            await pubsub.subscribe(self.channel_of(name))
        except (RedisError, OSError) as exc:  # the reconnect subscribes to every name again
            log.warning("redis subscribe to %s failed (%s); retried on reconnect", name, type(exc).__name__)

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        await self.local.publish(name, data)
        if name in LOCAL_ONLY:
            return
        payload = json.dumps(data, separators=(",", ":"), default=str)
        # Shielded: a caller cancelled while waiting must not cancel the others' send.
        await asyncio.shield(self._queue((name, payload)))

    def _queue(self, payload: tuple[str, str]) -> Awaitable[None]:
        """Add ``(name, data as JSON)`` to this turn's batch (opening one if needed); done once it is sent."""
        batch = self._outgoing
        if batch is None:
            batch = self._outgoing = _PublishBatch(asyncio.get_running_loop().create_future())
            # call_soon: after every callback already ready in this turn, so the lines
            # of a commit, whose waiters all wake in this turn, go together.
            asyncio.get_running_loop().call_soon(self._flush)
        batch.payloads.append(payload)
        return batch.sent

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, None
        if batch is not None:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: "_PublishBatch") -> None:
        try:
            messages = batch.messages(self.origin, self.channel_of)
            if self.pipe is not None:
                await self.pipe.send_all([("PUBLISH", channel, message) for channel, message in messages])
            elif len(messages) == 1:
                await self.redis.publish(*messages[0])
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, message in messages:
                        pipe.publish(channel, message)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            # The change is committed; other processes' widgets catch up on resync.
            log.warning("redis publish failed (%s); remote sockets will resync", type(exc).__name__)
        finally:
            if not batch.sent.done():
                batch.sent.set_result(None)

    async def start(self) -> None:
        """Subscribe in the background; returns once the first subscription is live."""
        self._task = asyncio.create_task(self._listen(), name="redis-bus")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def _listen(self) -> None:
        delay = 0.2
        subscribed_before = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                self._pubsub = pubsub  # first: a name subscribed while this runs is added late, not lost
                await pubsub.subscribe(self.channel, *(self.channel_of(name) for name in sorted(self._names)))
                while True:
                    msg = await pubsub.get_message(timeout=5.0)
                    if msg is None:
                        continue
                    if msg.get("type") == "subscribe" and _text(msg.get("channel")) == self.channel:
                        # redis-py re-subscribes by itself after a dropped connection;
                        # every confirmation after the first means events may be lost.
                        self.connected = True
                        self._ready.set()
                        if subscribed_before:
                            log.info("redis bus reconnected; resyncing from the database")
                            await self.local.publish(ev.RESYNC, {})
                        subscribed_before, delay = True, 0.2
                    elif msg.get("type") == "message":
                        await self._dispatch(msg["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected = False
                log.warning("redis bus disconnected (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _dispatch(self, raw: bytes) -> None:
        self.heard += 1
        if raw.startswith(self._own):
            return
        try:
            event = json.loads(raw)
            if event["o"] == self.origin:
                return
            name = event["n"]
            datas = event["ds"] if "ds" in event else [event["d"]]
            if not isinstance(datas, list):
                raise TypeError("ds is not a list")
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event on %s", self.channel)
            return
        for data in datas:
            await self.local.publish(name, data)

    async def ping(self) -> None:
        await self.redis.ping()

    async def drain(self) -> None:
        await self.local.drain()

    async def close(self) -> None:
        if self._sending:  # publishes already queued go out before the connection closes
            await asyncio.wait(set(self._sending), timeout=5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.pipe is not None:
            self.pipe.close()
        await self.redis.aclose()
