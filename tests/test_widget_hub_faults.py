"""The hub catching sockets up while the database fails under it.

A socket that saw a gap, or a resync after the bus reconnected, reads what it
missed from the database. The faults are real, nothing of ours is patched
for them: on SQLite another connection renames the table the read needs
(WAL never blocks readers), on PostgreSQL another connection holds an
exclusive lock on it and every backend of ours that queues behind it is
terminated (a dropped connection). Lost events are simulated by dropping
them at the publisher, as Redis pub/sub drops them while it is away.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import pytest

from adapters.widget.socket import HUB
from core import events as ev
from core.agents import create_agent
from core.services import Limits, Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.widget_client import Visitor

Event = tuple[str, dict[str, Any]]


@pytest.fixture
def limits() -> Limits:
    return Limits(connections_per_ip=1000, messages_per_ip_per_minute=1000)


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


@pytest.fixture
async def agent_id(services: Services) -> int:
    async with services.db.write() as session:
        return (await create_agent(session, {"name": "Ana", "email": "ana@example.com"})).id


@pytest.fixture
def hub(client):  # type: ignore[no-untyped-def]
    hub = client.app[HUB]
    hub.catch_up_retry_s = 0.1  # retried within the test's patience; production waits 1 s, doubling
    return hub


@contextmanager
def _events_lost(services: Services, *names: str) -> Iterator[list[Event]]:
    """Events of ``names`` published meanwhile reach nobody (kept in the yielded list)."""
    bus: Any = services.bus
    publish = bus.publish
    lost: list[Event] = []

    async def dropping(name: str, data: dict[str, Any]) -> None:
        if name in names:
            lost.append((name, data))
        else:
            await publish(name, data)

    bus.publish = dropping
    try:
        yield lost
    finally:
        del bus.publish


@asynccontextmanager
async def _reads_failing(services: Services, db_url: str, table: str) -> AsyncIterator[None]:
    """Until the block ends, our reads of ``table`` fail for real (see the module docstring)."""
    if services.db.is_sqlite:
        other = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
        try:
            other.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
            try:
                yield
            finally:
                other.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
        finally:
            other.close()
        return
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    locker, killer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    done = asyncio.Event()
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

        async def terminate_waiters() -> None:
            while not done.is_set():
                await killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> $1 AND pid <> pg_backend_pid()",
                    locker.get_server_pid(),
                )
                await asyncio.sleep(0.02)

        terminator = asyncio.create_task(terminate_waiters())
        try:
            yield
        finally:
            done.set()
            await terminator
            await tx.rollback()
    finally:
        await locker.close()
        await killer.close()


def _hub_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "adapters.widget.hub" and r.levelno >= logging.WARNING]


def _handler_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """A handler that raised (the bus logs it): the hub must never let a failed read escape."""
    return [r for r in caplog.records if r.name == "core.events"]


async def _joined(client, widget, services: Services, client_id: str = "c1") -> tuple[Visitor, int]:  # type: ignore[no-untyped-def]
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hi", client_id)
    assert (await visitor.next("message"))["seq"] == 1  # the socket now follows its conversation
    return visitor, ack["conversation_id"]


async def _messages(visitor: Visitor, count: int) -> list[tuple[int, str]]:
    frames = [await visitor.next("message", timeout=8) for _ in range(count)]
    return [(f["seq"], f["text"]) for f in frames]


async def _nothing_more(visitor: Visitor) -> None:
    assert [f for f in await visitor.quiet(0.3) if f["type"] in {"message", "conversation"}] == []


async def test_a_gap_the_database_cannot_fill_is_filled_once_it_answers_without_another_event(
    client, hub, widget, services, agent_id, db_url, caplog
):
    caplog.set_level(logging.INFO)
    visitor, conv_id = await _joined(client, widget, services)
    with _events_lost(services, ev.MESSAGE_CREATED) as lost:
        for text in ("first", "second", "third"):
            await services.chat.agent_message(conv_id, text, agent_id=agent_id)
    assert [data["seq"] for _, data in lost] == [2, 3, 4]

    async with _reads_failing(services, db_url, "messages"):
        for name, data in lost[1:]:  # 3 arrives (2 was lost): a gap the database cannot fill now
            await services.bus.publish(name, data)
            await services.bus.drain()  # type: ignore[attr-defined]
        assert [f for f in await visitor.quiet(0.2) if f["type"] == "message"] == []
        failing = _hub_warnings(caplog)

    # Logged once, with its traceback, for two failed reads (and the retries meanwhile).
    assert len(failing) == 1 and failing[0].exc_info is not None
    # No further event comes: the hub retries by itself. In order, each once.
    assert await _messages(visitor, 3) == [(2, "first"), (3, "second"), (4, "third")]
    await _nothing_more(visitor)
    assert not visitor.ws.closed
    await eventually(lambda: any("caught up" in r.getMessage() for r in caplog.records))
    assert _handler_failures(caplog) == []

    # Live again: the next line arrives as an event, right after the ones caught up.
    await services.chat.agent_message(conv_id, "fourth", agent_id=agent_id)
    assert await _messages(visitor, 1) == [(5, "fourth")]
    await _nothing_more(visitor)


async def test_a_resync_the_database_fails_catches_every_socket_up_when_it_answers(
    client, hub, widget, services, agent_id, db_url, caplog
):
    caplog.set_level(logging.INFO)
    joined = [await _joined(client, widget, services, f"c{i}") for i in range(3)]
    with _events_lost(services, ev.MESSAGE_CREATED):  # the bus was away
        for i, (_visitor, conv_id) in enumerate(joined):
            await services.chat.agent_message(conv_id, f"for visitor {i}", agent_id=agent_id)
            await services.chat.agent_message(conv_id, f"and more for {i}", agent_id=agent_id)

    async with _reads_failing(services, db_url, "conversations"):
        await services.bus.publish(ev.RESYNC, {})  # the bus is back: catch up from the database
        await eventually(lambda: _hub_warnings(caplog), timeout=10)
        await asyncio.sleep(0.3)  # retries fail meanwhile
        for visitor, _conv_id in joined:
            assert [f for f in await visitor.quiet(0.05) if f["type"] == "message"] == []

    assert len(_hub_warnings(caplog)) == 1
    for i, (visitor, _conv_id) in enumerate(joined):  # every socket, not only the first
        assert await _messages(visitor, 2) == [(2, f"for visitor {i}"), (3, f"and more for {i}")]
    for visitor, _conv_id in joined:
        await _nothing_more(visitor)
    assert _handler_failures(caplog) == []


async def test_a_resync_tells_a_socket_its_conversation_closed_when_the_close_was_missed(
    client, hub, widget, services, agent_id
):
    visitor, conv_id = await _joined(client, widget, services)
    with _events_lost(services, ev.MESSAGE_CREATED, ev.CONVERSATION_UPDATED):
        await services.chat.agent_message(conv_id, "thanks, bye", agent_id=agent_id)
        await services.chat.close(conv_id)
    await services.bus.publish(ev.RESYNC, {})
    assert await _messages(visitor, 1) == [(2, "thanks, bye")]
    closed = await visitor.next("conversation")
    assert closed == {"type": "conversation", "conversation_id": conv_id, "state": "closed"}
    await _nothing_more(visitor)


async def test_a_close_arriving_before_missed_lines_sends_them_first_and_late_news_is_not_replayed(
    client, hub, widget, services, agent_id
):
    visitor, conv_id = await _joined(client, widget, services)
    with _events_lost(services, ev.MESSAGE_CREATED) as lost:
        await services.chat.agent_message(conv_id, "one last thing", agent_id=agent_id)
    await services.chat.close(conv_id)
    assert await _messages(visitor, 1) == [(2, "one last thing")]
    assert (await visitor.next("conversation"))["state"] == "closed"
    for name, data in lost:  # the lost event turns up after all: the whole chat is not sent again
        await services.bus.publish(name, data)
    await _nothing_more(visitor)


async def test_a_close_whose_missed_lines_cannot_be_read_waits_for_the_database(
    client, hub, widget, services, agent_id, db_url, caplog
):
    caplog.set_level(logging.INFO)
    visitor, conv_id = await _joined(client, widget, services)
    with _events_lost(services, ev.MESSAGE_CREATED, ev.CONVERSATION_UPDATED) as lost:
        await services.chat.agent_message(conv_id, "one last thing", agent_id=agent_id)
        await services.chat.close(conv_id)
    closing = [(n, d) for n, d in lost if n == ev.CONVERSATION_UPDATED]
    async with _reads_failing(services, db_url, "messages"):
        for name, data in closing:
            await services.bus.publish(name, data)
        await services.bus.drain()  # type: ignore[attr-defined]
        # Not told "closed" yet: the line before it is still to come.
        assert [f for f in await visitor.quiet(0.2) if f["type"] in {"message", "conversation"}] == []
    assert await _messages(visitor, 1) == [(2, "one last thing")]
    assert (await visitor.next("conversation", timeout=5))["state"] == "closed"
    await _nothing_more(visitor)
    assert _handler_failures(caplog) == []


async def test_a_socket_that_leaves_while_behind_is_forgotten(client, hub, widget, services, agent_id, db_url):
    visitor, conv_id = await _joined(client, widget, services)
    with _events_lost(services, ev.MESSAGE_CREATED) as lost:
        await services.chat.agent_message(conv_id, "a", agent_id=agent_id)
        await services.chat.agent_message(conv_id, "b", agent_id=agent_id)
    async with _reads_failing(services, db_url, "messages"):
        await services.bus.publish(*lost[1])
        await services.bus.drain()  # type: ignore[attr-defined]
        await visitor.close()
        await eventually(lambda: hub.count == 0)
    await eventually(lambda: hub._catch_up_task is None)  # nothing left to retry
