"""Statements of a write transaction run on its own connection (core/driver_sql.py
``returned_rows``, ``execute_many``): on SQLite past SQLAlchemy, on PostgreSQL through
the session, with the same rows back and the transaction's fate either way."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from core.bulk_sql import insert_many, update_many
from core.db import Database
from core.driver_sql import returned_rows
from core.models import OutboxItem
from core.outbox import outbox_row
from tests.sql_statements import statements

T = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
TABLE = OutboxItem.__table__
RENAME = update(TABLE).where(TABLE.c.id == 1).values(kind=TABLE.c.kind + "!").returning(*TABLE.c)


def _through_sqlalchemy(db: Database) -> tuple[list[str], Any]:
    """Statements SQLAlchemy's cursor events see (not those run past it), and the listener."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    return seen, record


async def _kinds(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(select(TABLE.c.kind).order_by(TABLE.c.id))).scalars())


async def test_rows_come_back_as_the_session_returns_them_and_run_past_it_on_sqlite(db: Database):
    async with db.write() as session:
        await insert_many(session, TABLE, [outbox_row("probe", {"a": [1, None], "é": "x"}, ordering_key="k")])
    seen, record = _through_sqlalchemy(db)
    event.listen(db._write_engine.sync_engine, "before_cursor_execute", record)
    try:
        with statements(db) as every:
            async with db.write() as session:
                [row] = await returned_rows(session, RENAME, {})
    finally:
        event.remove(db._write_engine.sync_engine, "before_cursor_execute", record)
    assert row["kind"] == "probe!" and row["payload"] == {"a": [1, None], "é": "x"} and row["ordering_key"] == "k"
    assert row["created_at"].tzinfo is not None  # the column's own processing: aware UTC
    assert any(s.startswith("UPDATE outbox") for s in every)  # counted either way
    ran_in_session = any(s.startswith("UPDATE outbox") for s in seen)
    assert ran_in_session == (not db.is_sqlite)
    async with db.read() as session:  # what the session returns for the same row now
        [again] = await returned_rows(session, select(*TABLE.c).where(TABLE.c.id == 1), {})
    assert again == row


async def test_a_rolled_back_transaction_takes_its_inline_statements_with_it(db: Database):
    async with db.write() as session:
        await insert_many(session, TABLE, [outbox_row("probe", {})])
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with db.write() as session:
            await returned_rows(session, RENAME, {})
            await insert_many(session, TABLE, [outbox_row("second", {})])
            raise RuntimeError("changed my mind")
    assert await _kinds(db) == ["probe"]
    async with db.write() as session:  # the connection is sound for the next transaction
        await returned_rows(session, RENAME, {})
    assert await _kinds(db) == ["probe!"]


async def test_many_rows_keep_their_order_and_the_columns_python_defaults(db: Database):
    rows = [outbox_row(f"k{n}", {"n": n}) for n in range(5)]
    for row in rows:
        del row["attempts"]  # a column with a default in Python, left out
    with statements(db) as seen:
        async with db.write() as session:
            await insert_many(session, TABLE, rows)
            await update_many(session, TABLE, "id", [{"id": 2, "status": "done"}, {"id": 4, "status": "dead"}])
    assert len([s for s in seen if s.startswith("INSERT INTO outbox")]) == 1
    async with db.read() as session:
        stored = (await session.execute(select(TABLE.c.kind, TABLE.c.status, TABLE.c.attempts).order_by(TABLE.c.id))).all()
    assert [tuple(r) for r in stored] == [
        ("k0", "pending", 0), ("k1", "done", 0), ("k2", "pending", 0), ("k3", "dead", 0), ("k4", "pending", 0)
    ]


async def test_a_read_session_goes_through_sqlalchemy(db: Database):
    async with db.write() as session:
        await insert_many(session, TABLE, [outbox_row("probe", {})])
    seen, record = _through_sqlalchemy(db)
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.read() as session:
            [row] = await returned_rows(session, text("SELECT kind FROM outbox").columns(TABLE.c.kind), {})
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert row == {"kind": "probe"}
    assert "SELECT kind FROM outbox" in seen


async def test_the_connection_refuses_inline_statements_outside_its_write_transaction(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.read() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            with pytest.raises(RuntimeError, match="write transaction"):
                driver.run_now("SELECT 1", ())
    finally:
        await db.dispose()
