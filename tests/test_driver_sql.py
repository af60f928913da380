"""Statements run by the driver itself (core/driver_sql.py), on PostgreSQL: the values of a
Core execution, a commit of their own, and the pool's connections kept sound whatever fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Text, bindparam, column, event, text
from sqlalchemy.dialects.postgresql import ARRAY

from core.db import Database
from core.models import UTCDateTime
from tests.sql_statements import statements

T = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)

ROWS = text(
    "SELECT v.n AS n, v.t AS t, v.ok AS ok, :at AS at, CAST(:doc AS JSON) AS doc "
    "FROM unnest(:ns, :ts, :oks) WITH ORDINALITY AS v(n, t, ok, i) ORDER BY v.i"
).bindparams(
    bindparam("ns", type_=ARRAY(BigInteger)), bindparam("ts", type_=ARRAY(Text)),
    bindparam("oks", type_=ARRAY(Boolean)), bindparam("at", type_=UTCDateTime()), bindparam("doc", type_=Text),
).columns(
    column("n", BigInteger()), column("t", Text()), column("ok", Boolean()), column("at", UTCDateTime()), column("doc", JSON())
)

INSERT = text("INSERT INTO driver_probe (note) VALUES (:note) RETURNING id, note").bindparams(
    bindparam("note", type_=Text)
).columns(column("id", BigInteger()), column("note", Text()))


@pytest.fixture
async def pg(pg_session_url: str) -> AsyncIterator[Database]:
    db = Database(pg_session_url)
    async with db.write() as session:
        await session.execute(text("DROP TABLE IF EXISTS driver_probe"))
        await session.execute(text("CREATE TABLE driver_probe (id bigserial PRIMARY KEY, note text UNIQUE)"))
    yield db
    async with db.write() as session:
        await session.execute(text("DROP TABLE driver_probe"))
    await db.dispose()


async def _notes(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(text("SELECT note FROM driver_probe ORDER BY id"))).scalars())


async def test_rows_come_back_as_a_core_execution_returns_them(pg: Database):
    params: dict[str, Any] = {
        "ns": [1, 2, 3], "ts": ["naïve \"quoted\"", None, ""], "oks": [True, False, None],
        "at": T, "doc": '{"a": [1, null]}',
    }
    async with pg.read() as session:
        core = [dict(row._mapping) for row in (await session.execute(ROWS, params)).all()]
    driver = await pg.driver_statement(ROWS).fetch(params)
    assert driver == core
    assert driver[0]["at"] == T and driver[0]["at"].tzinfo is not None and driver[0]["doc"] == {"a": [1, None]}


async def test_a_write_commits_on_its_own_and_listeners_see_the_sql(pg: Database):
    with statements(pg) as seen:
        rows = await pg.driver_statement(INSERT).fetch({"note": "first"})
    assert rows == [{"id": rows[0]["id"], "note": "first"}]
    assert await _notes(pg) == ["first"]  # another connection sees it: committed
    inserts = [s for s in seen if s.startswith("INSERT INTO driver_probe")]
    assert inserts == ["INSERT INTO driver_probe (note) VALUES ($1::VARCHAR) RETURNING id, note"]


async def test_a_server_error_raises_and_the_connection_goes_back_sound(pg: Database):
    statement = pg.driver_statement(INSERT)
    await statement.fetch({"note": "taken"})
    with pytest.raises(Exception) as failed:
        await statement.fetch({"note": "taken"})
    assert getattr(failed.value, "sqlstate", None) == "23505"  # unique violation, from the server
    assert pg.engine.pool.checkedout() == 0
    for n in range(30):  # every pooled connection still works, outside any transaction
        await statement.fetch({"note": f"after {n}"})
    assert len(await _notes(pg)) == 31


async def test_a_connection_left_in_a_transaction_does_not_swallow_the_write(pg: Database):
    """Were the statement run inside a transaction someone left open, it would be rolled
    back when the connection returns to the pool, after the caller heard "stored"."""

    def leave_a_transaction_open(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        cursor.close()

    await pg.engine.dispose()  # new connections from here on, each opened by the listener
    event.listen(pg.engine.sync_engine, "connect", leave_a_transaction_open)
    try:
        await asyncio.gather(*(pg.driver_statement(INSERT).fetch({"note": f"n{n}"}) for n in range(5)))
    finally:
        event.remove(pg.engine.sync_engine, "connect", leave_a_transaction_open)
    await pg.engine.dispose()
    assert sorted(await _notes(pg)) == [f"n{n}" for n in range(5)]


async def test_a_cancelled_statement_drops_its_connection_and_the_pool_goes_on(pg: Database):
    sleep = text("SELECT pg_sleep(30) AS slept").columns(column("slept", Text()))
    task = asyncio.ensure_future(pg.driver_statement(sleep).fetch({}))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pg.engine.pool.checkedout() == 0
    for n in range(30):  # no connection is left mid-statement in the pool
        await pg.driver_statement(INSERT).fetch({"note": f"n{n}"})
    async with pg.read() as session:
        for _ in range(50):  # the server's side of the dropped connection ends too
            sleeping = (await session.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND pid <> pg_backend_pid()"
            ))).scalar()
            if not sleeping:
                break
            await asyncio.sleep(0.1)
    assert sleeping == 0


def test_a_statement_with_an_expanding_list_is_refused(pg: Database):
    expanding = text("SELECT 1 AS one WHERE 1 IN :ids").bindparams(bindparam("ids", expanding=True))
    expanding = expanding.columns(column("one", BigInteger()))
    with pytest.raises(ValueError, match="expanding"):
        pg.driver_statement(expanding)


def test_sqlite_has_no_driver_statements(tmp_path):
    with pytest.raises(RuntimeError, match="PostgreSQL"):
        Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}").driver_statement(INSERT)
