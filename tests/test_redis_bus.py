"""The Redis event bus (adapters/redis/bus.py) against the local Redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit


import redis.asyncio as aioredis

from adapters.redis.bus import RedisBus


class _CountingProxy:
    """A TCP relay in front of Redis that counts the chunks the sender writes.

    Redis's own read counter is server-wide: another test process using the same
    Redis would add to it. This counts only what passes through here."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.chunks = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            while chunk := await src.read(65536):
                self.chunks += count
                dst.write(chunk)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_events_raised_in_one_turn_reach_redis_in_one_write_and_arrive_in_order(redis_url: str) -> None:
    """The lines of one group commit each publish an event in the same turn of the loop:
    Redis reads them in one go, another process reads them as one message and gets every
    one, in order, and the sender drops its own message."""
    channel = f"test{os.getpid()}:bus-batch"
    target = urlsplit(redis_url)
    proxy = _CountingProxy(target.port or 6379)
    via_proxy = urlunsplit(target._replace(netloc=f"127.0.0.1:{await proxy.start()}"))
    sender, receiver = RedisBus(via_proxy, channel=channel), RedisBus(redis_url, channel=channel)
    got: list[int] = []

    async def on_created(_name: str, data: dict[str, Any]) -> None:
        got.append(data["i"])

    own: list[int] = []

    async def on_own(_name: str, data: dict[str, Any]) -> None:
        own.append(data["i"])

    receiver.subscribe("message.created", on_created)
    sender.subscribe("message.created", on_own)
    try:
        await receiver.start()
        await sender.start()
        await sender.publish("message.created", {"i": -1})  # the sender's connection is open
        await _wait_for(lambda: got == [-1])
        before, heard_before = proxy.chunks, receiver.heard
        await asyncio.gather(*(sender.publish("message.created", {"i": i}) for i in range(20)))
        await _wait_for(lambda: len(got) == 21)
        reads = proxy.chunks - before
        assert got == [-1, *range(20)]
        assert reads <= 3, reads  # one per event (20) before they went together
        assert receiver.heard - heard_before == 1  # one message, not 20
        await _wait_for(lambda: sender.heard == receiver.heard)
        assert own == [-1, *range(20)]  # delivered here once, at publish, not again from Redis
        # A publisher that awaits each event still sends each at once.
        await sender.publish("message.created", {"i": 20})
        await _wait_for(lambda: got[-1] == 20)
    finally:
        await sender.close()
        await receiver.close()
        await proxy.close()


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_process_hears_only_the_events_it_has_handlers_for(redis_url: str) -> None:
    """A worker has no visitor sockets: the visitors' lines, 300 a second under load, must not
    reach it. Each event name travels on its own channel; a name subscribed after the
    bus started is heard from then on."""
    channel = f"test{os.getpid()}:bus-names"
    sender, worker = RedisBus(redis_url, channel=channel), RedisBus(redis_url, channel=channel)
    wakes: list[int] = []
    changes: list[int] = []

    async def on_wake(_name: str, data: dict[str, Any]) -> None:
        wakes.append(data["i"])

    async def on_change(_name: str, data: dict[str, Any]) -> None:
        changes.append(data["i"])

    worker.subscribe("outbox.enqueued", on_wake)
    try:
        await worker.start()
        await sender.start()
        for i in range(10):
            await sender.publish("message.created", {"i": i})
        await sender.publish("outbox.enqueued", {"i": 1})
        await _wait_for(lambda: wakes == [1])
        assert worker.heard == 1  # not the ten lines
        worker.subscribe("widget.changed", on_change)  # late, as the web's hubs do
        for attempt in range(50):  # until Redis has the late subscription (another connection)
            await sender.publish("widget.changed", {"i": attempt})
            await asyncio.sleep(0.02)
            if changes:
                break
        await sender.publish("message.created", {"i": 10})
        await sender.publish("outbox.enqueued", {"i": 2})
        await _wait_for(lambda: wakes == [1, 2])
        assert changes and worker.heard == 2 + len(changes)
    finally:
        await sender.close()
        await worker.close()


async def test_events_of_a_process_of_the_earlier_version_are_still_heard(redis_url: str) -> None:
    """Before one channel per name, every event went to the bus's channel itself: during
    an upgrade the newer processes still hear the older ones there."""
    channel = f"test{os.getpid()}:bus-upgrade"
    bus = RedisBus(redis_url, channel=channel)
    got: list[dict[str, Any]] = []

    async def on_change(_name: str, data: dict[str, Any]) -> None:
        got.append(data)

    bus.subscribe("widget.changed", on_change)
    old = aioredis.Redis.from_url(redis_url)
    try:
        await bus.start()
        await old.publish(channel, json.dumps({"o": "an-older-process", "n": "widget.changed", "d": {"widget_id": 7}}))
        await _wait_for(lambda: got == [{"widget_id": 7}])
    finally:
        await old.aclose()
        await bus.close()


async def test_publishes_go_on_the_bus_connection_and_one_lost_with_it_is_only_logged(redis_url: str, caplog) -> None:
    """The bus publishes on a connection of its own. When Redis drops it, a publish on it is
    lost and logged, not raised (the change is committed; remote sockets resync), and the next
    publish reconnects. TLS and Unix-socket URLs publish through redis-py."""
    assert RedisBus("rediss://127.0.0.1:6380/0").pipe is None
    assert RedisBus("unix:///tmp/redis.sock").pipe is None
    channel = f"test{os.getpid()}:bus-pipe"
    sender, receiver = RedisBus(redis_url, channel=channel), RedisBus(redis_url, channel=channel)
    got: list[int] = []

    async def on_created(_name: str, data: dict[str, Any]) -> None:
        got.append(data["i"])

    receiver.subscribe("message.created", on_created)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await receiver.start()
        await sender.start()
        await sender.publish("message.created", {"i": 1})
        await _wait_for(lambda: got == [1])
        pipe = sender.pipe
        assert pipe is not None and pipe.connections == 1 and pipe._replies is not None
        assert pipe._replies.transport is not None
        host, port = pipe._replies.transport.get_extra_info("sockname")[:2]
        assert await admin.client_kill_filter(addr=f"{host}:{port}") == 1
        await _wait_for(lambda: pipe._replies is not None and pipe._replies.lost)
        await sender.publish("message.created", {"i": 2})  # reconnects, and is heard
        await _wait_for(lambda: got == [1, 2])
        assert pipe.connections == 2
        # Redis out of reach: the publish is logged, not raised, and the next one gets through.
        pipe._replies.transport.abort()
        pipe.port, real_port = _closed_port(), pipe.port
        await sender.publish("message.created", {"i": 3})
        assert "redis publish failed" in caplog.text
        pipe.port = real_port
        await sender.publish("message.created", {"i": 4})
        await _wait_for(lambda: got == [1, 2, 4])
    finally:
        await admin.aclose()
        await sender.close()
        await receiver.close()
