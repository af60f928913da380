"""PostgreSQL connections: reads hold no transaction, and a pooled connection that
died while idle is replaced before anyone uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import select, text

import core.db
from core.db import Database
from core.models import Widget
from core.widgets import create_widget
from tests.conftest import _admin_dsn


@pytest.fixture
async def pg(pg_session_url: str) -> AsyncIterator[Database]:
    from tests.conftest import _reset_postgres

    database = Database(pg_session_url)
    await _reset_postgres(database)
    yield database
    await database.dispose()


async def _backend_state(pid: int) -> str | None:
    admin = await asyncpg.connect(_admin_dsn())
    try:
        return await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await admin.close()


async def _server_pid(session) -> int:  # type: ignore[no-untyped-def]
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_read_session_leaves_no_transaction_open(pg: Database) -> None:
    async with pg.write() as session:
        await create_widget(session, {"name": "Shop"})
    async with pg.read() as session:
        assert (await session.scalars(select(Widget.name))).all() == ["Shop"]
        pid = await _server_pid(session)
        # Between statements the server sees no open transaction: no BEGIN or ROLLBACK was sent.
        assert await _backend_state(pid) == "idle"
    async with pg.write() as session:
        await session.execute(select(Widget.id))
        assert await _backend_state(await _server_pid(session)) == "idle in transaction"


async def test_writes_still_roll_back_as_a_whole(pg: Database) -> None:
    with pytest.raises(RuntimeError):
        async with pg.write() as session:
            await create_widget(session, {"name": "Half"})
            await session.flush()
            raise RuntimeError("stop half way")
    async with pg.read() as session:
        assert (await session.scalars(select(Widget.name))).all() == []


async def test_a_connection_killed_while_idle_is_replaced_before_use(pg: Database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async with pg.read() as session:
        first = await _server_pid(session)
    admin = await asyncpg.connect(_admin_dsn())
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first) is True
    finally:
        await admin.close()
    monkeypatch.setattr(core.db, "PING_AFTER_IDLE_S", 0.0)  # the pooled connection counts as idle
    async with pg.read() as session:  # no error: the dead connection was checked and replaced
        assert await _server_pid(session) != first


async def test_a_connection_used_a_moment_ago_is_not_checked_again(pg: Database) -> None:
    pings: list[object] = []
    original = pg.engine.dialect.do_ping

    def counting_ping(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return original(dbapi_conn)

    pg.engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    for _ in range(5):
        async with pg.read() as session:
            await session.execute(text("SELECT 1"))
    assert pings == []


async def test_filling_the_pool_opens_its_kept_connections_before_the_first_burst(pg: Database) -> None:
    """Opened on demand, the first visitors waited for each connect, login and type lookup."""
    await pg.dispose()
    assert pg.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    await pg.fill_pool()
    assert pg.engine.pool.checkedin() == core.db.PG_POOL_KEPT  # type: ignore[attr-defined]
    async with pg.read() as session:  # and they serve as any other
        assert (await session.execute(select(Widget))).all() == []
    assert pg.engine.pool.checkedin() == core.db.PG_POOL_KEPT  # type: ignore[attr-defined]
