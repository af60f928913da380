"""Widgets coming back: batched welcome reads, and a database that fails under a socket.

The faults here are real ones, nothing of ours is patched: another
connection holds SQLite's write lock until our writer gives up ("database is
locked"), or renames the table a read needs (WAL never blocks readers), or a
PostgreSQL backend serving us is terminated while it waits on a lock (a
dropped connection).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import func, select, text

from adapters.widget.socket import HUB
from core.agents import create_agent
from core.models import Conversation, Message
from core.services import Limits, Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.widget_client import Visitor

from bot.settings import ConfigError, Settings


@pytest.fixture
def limits() -> Limits:
    return Limits(connections_per_ip=1000, messages_per_ip_per_minute=1000)


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


async def _messages(services: Services) -> int:
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(Message))).scalar_one())


@asynccontextmanager
async def _database_failing(services: Services, db_url: str, table: str) -> AsyncIterator[asyncio.Event]:
    """Until the yielded event is set, statements of ours that touch ``table`` fail for real.

    SQLite: another connection holds the write lock and our writer's busy timeout is short,
    so a write fails with "database is locked" (reads are not blocked under WAL, so ``table``
    is moved out of the way instead). PostgreSQL: another connection holds an exclusive lock
    on ``table`` and every backend of ours that queues behind it is terminated.
    """
    done = asyncio.Event()
    if services.db.is_sqlite:
        path = db_url.split("///", 1)[1]
        async with services.db.write() as session:  # the one write connection: give up after 100 ms
            await session.execute(text("PRAGMA busy_timeout=100"))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            if table == "messages":
                other.execute("BEGIN IMMEDIATE")
                yield done
                other.execute("ROLLBACK")
            else:
                other.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
                yield done
                other.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
        finally:
            other.close()
            async with services.db.write() as session:
                await session.execute(text("PRAGMA busy_timeout=10000"))
        return
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    locker, killer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
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
                await asyncio.sleep(0.05)

        terminator = asyncio.create_task(terminate_waiters())
        try:
            yield done
        finally:
            done.set()
            await terminator
            await tx.rollback()
    finally:
        await locker.close()
        await killer.close()


async def test_a_storm_of_returning_visitors_is_read_in_a_few_queries(client, widget, services):
    visitors = [await Visitor.connect(client, widget.key) for _ in range(40)]
    acks = [await v.say("hi", f"c{i}") for i, v in enumerate(visitors)]
    for v in visitors:
        await v.next("message")
        await v.close()
    lookups = client.app[HUB].open_conversations
    before = lookups.queries
    back = await asyncio.gather(
        *(
            Visitor.connect(client, widget.key, token=v.welcome["token"], conversation_id=a["conversation_id"], resume_after=1)
            for v, a in zip(visitors, acks)
        )
    )
    assert [b.welcome["conversation_id"] for b in back] == [a["conversation_id"] for a in acks]
    assert [b.welcome["visitor_id"] for b in back] == [v.welcome["visitor_id"] for v in visitors]
    assert lookups.queries - before < 10  # 40 hellos, read together
    for b in back:  # up to date: nothing replayed, nothing doubled
        assert [f for f in await b.quiet(0.05) if f["type"] == "message"] == []


async def test_a_returning_visitor_resumes_their_newest_open_conversation_on_that_widget(client, widget, services):
    async with services.db.write() as session:
        other = await create_widget(session, {"name": "Other shop"})
    visitor = await Visitor.connect(client, widget.key)
    token = visitor.welcome["token"]
    first = await visitor.say("first chat", "c1")
    async with services.db.write() as session:  # closed: not resumed
        conv = await session.get(Conversation, first["conversation_id"])
        conv.status = "closed"
    second = await visitor.say("second chat", "c2")
    assert second["conversation_id"] != first["conversation_id"]
    back = await Visitor.connect(client, widget.key, token=token, conversation_id=second["conversation_id"], resume_after=0)
    assert back.welcome["conversation_id"] == second["conversation_id"]
    assert (await back.next("message"))["text"] == "second chat"
    elsewhere = await Visitor.connect(client, other.key, token=token)
    assert elsewhere.welcome["conversation_id"] is None


async def test_a_message_the_database_fails_to_store_gets_an_error_and_the_socket_stays(
    client, widget, services, db_url, caplog
):
    caplog.set_level(logging.ERROR, logger="adapters.widget.socket")
    visitor = await Visitor.connect(client, widget.key)
    async with _database_failing(services, db_url, "conversations" if not services.db.is_sqlite else "messages") as done:
        await visitor.send(type="message", client_id="c1", text="Is my order on its way?")
        error = await visitor.next("error", timeout=30)
        done.set()
    assert error["code"] == "unavailable" and error["client_id"] == "c1"
    assert await _messages(services) == 0  # not acknowledged, not stored
    logged = [r for r in caplog.records if r.name == "adapters.widget.socket"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    # The same socket, the same client_id again (as widget.js resends): stored once, acked.
    ack = await visitor.say("Is my order on its way?", "c1")
    assert ack["type"] == "ack" and ack["client_id"] == "c1"
    assert (await visitor.say("and a second line", "c2"))["type"] == "ack"
    assert await _messages(services) == 2
    assert not visitor.ws.closed


async def test_a_welcome_the_database_fails_to_read_says_try_again_and_the_next_try_resumes(
    client, widget, services, db_url, caplog
):
    caplog.set_level(logging.ERROR, logger="adapters.widget.socket")
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hello", "c1")
    await visitor.next("message")
    await visitor.close()
    hello = {"token": visitor.welcome["token"], "conversation_id": ack["conversation_id"], "resume_after": 1}
    async with _database_failing(services, db_url, "conversations") as done:
        ws = await client.ws_connect(f"/widget/{widget.key}/ws")
        await ws.send_json({"type": "hello", **hello})
        error = (await ws.receive(timeout=10)).json()
        done.set()
        closing = await ws.receive(timeout=5)
    assert error["type"] == "error" and error["code"] == "unavailable"
    assert closing.type.name in {"CLOSE", "CLOSING", "CLOSED"} and ws.close_code == 1013
    logged = [r for r in caplog.records if r.name == "adapters.widget.socket"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    await eventually(lambda: client.app[HUB].count == 0)  # the failed socket left nothing in the hub
    back = await Visitor.connect(client, widget.key, **hello)
    assert back.welcome["conversation_id"] == ack["conversation_id"]
    assert [f for f in await back.quiet(0.1) if f["type"] == "message"] == []


async def test_agent_lines_sent_while_widgets_were_away_are_replayed_once(client, widget, services):
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com"})
    visitors = [await Visitor.connect(client, widget.key) for _ in range(10)]
    acks = [await v.say("hi", f"c{i}") for i, v in enumerate(visitors)]
    for v in visitors:
        await v.next("message")
        await v.close()

    async def reply_and_come_back(v: Visitor, a: dict) -> Visitor:  # type: ignore[type-arg]
        await services.chat.agent_message(a["conversation_id"], "while you were away", agent_id=agent.id)
        hello = {"token": v.welcome["token"], "conversation_id": a["conversation_id"], "resume_after": 1}
        back, _ = await asyncio.gather(
            Visitor.connect(client, widget.key, **hello),
            services.chat.agent_message(a["conversation_id"], "and now", agent_id=agent.id),
        )
        return back

    back = await asyncio.gather(*(reply_and_come_back(v, a) for v, a in zip(visitors, acks)))
    for b in back:
        frames = [await b.next("message") for _ in range(2)]
        assert [f["seq"] for f in frames] == [2, 3]
        assert [f for f in await b.quiet(0.1) if f["type"] == "message"] == []  # (status frames may come)


def test_the_listen_backlog_is_configurable():
    assert Settings.from_env({}, dotenv=None).listen_backlog == 2048
    assert Settings.from_env({"DESKBELL_LISTEN_BACKLOG": "4096"}, dotenv=None).listen_backlog == 4096
    with pytest.raises(ConfigError, match="DESKBELL_LISTEN_BACKLOG"):
        Settings.from_env({"DESKBELL_LISTEN_BACKLOG": "lots"}, dotenv=None)
