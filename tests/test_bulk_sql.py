"""Many rows in one statement (core/bulk_sql.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from core.bulk_sql import insert_many, update_many
from core.db import Database
from core.models import OutboxItem
from tests.sql_statements import statements

T = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


async def _rows(db: Database) -> list[OutboxItem]:
    async with db.read() as session:
        return list((await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars())


async def test_rows_go_in_and_change_in_one_statement_each_with_json_nulls_and_defaults(db: Database):
    table = OutboxItem.__table__
    with statements(db) as seen:
        async with db.write() as session:
            await insert_many(session, table, [
                {"kind": "test", "payload": {"n": n, "text": "naïve \"quoted\""}, "ordering_key": None if n else "k"}
                for n in range(3)
            ])
        async with db.write() as session:
            ids = [item.id for item in await _rows(db)]
            await update_many(session, table, "id", [
                {"id": ids[0], "status": "done", "result": {"ts": "1.2"}, "done_at": T, "last_error": None},
                {"id": ids[2], "status": "done", "result": None, "done_at": T, "last_error": "it's fine"},
            ])
    if not db.is_sqlite:  # SQLite keeps executemany: in-process, it costs no more than one statement there
        assert len([s for s in seen if s.startswith(("INSERT", "UPDATE"))]) == 2, seen
    first, second, third = await _rows(db)
    assert [r.payload["n"] for r in (first, second, third)] == [0, 1, 2]
    assert first.payload["text"] == 'naïve "quoted"' and first.ordering_key == "k" and second.ordering_key is None
    # Column defaults are filled in as SQLAlchemy's INSERT would.
    assert {r.status for r in (second,)} == {"pending"} and second.attempts == 0 and second.created_at is not None
    assert (first.status, first.result, first.done_at, first.last_error) == ("done", {"ts": "1.2"}, T, None)
    assert (third.status, third.result, third.done_at, third.last_error) == ("done", None, T, "it's fine")
    assert second.done_at is None  # a row not named is not touched


async def test_existing_keys_are_skipped_when_asked(db: Database):
    from core.models import ProcessedEvent

    table = ProcessedEvent.__table__
    async with db.write() as session:
        await insert_many(session, table, [{"source": "test", "event_id": "a"}])
    async with db.write() as session:
        await insert_many(session, table, [{"source": "test", "event_id": e} for e in ("a", "b")], skip_existing=True)
    async with db.read() as session:
        assert sorted((await session.execute(select(ProcessedEvent.event_id))).scalars()) == ["a", "b"]


async def test_nothing_to_write_makes_no_statement(db: Database):
    async with db.write() as session:
        await insert_many(session, OutboxItem.__table__, [])
        await update_many(session, OutboxItem.__table__, "id", [])
    assert await _rows(db) == []


async def test_what_is_stored_is_what_sqlalchemys_own_insert_stores(db: Database):
    """The raw stored values (a datetime, a boolean, a NULL, quotes) match a row the ORM wrote."""
    from sqlalchemy import text

    from core.models import DeliveryAttempt

    attempt = {"outbox_id": 0, "number": 2, "started_at": T, "finished_at": T.replace(microsecond=123456),
               "ok": False, "status_code": None, "detail": "naïve 'quoted' \"text\""}
    async with db.write() as session:
        await insert_many(session, OutboxItem.__table__, [{"kind": "test", "payload": {}}])
        outbox_id = (await session.execute(select(OutboxItem.id))).scalar_one()
        session.add(DeliveryAttempt(**{**attempt, "outbox_id": outbox_id}))
        await session.flush()
        await insert_many(session, DeliveryAttempt.__table__, [{**attempt, "outbox_id": outbox_id}])
    async with db.read() as session:
        by_orm, by_bulk = (await session.execute(text(
            "SELECT outbox_id, number, started_at, finished_at, ok, status_code, detail FROM delivery_attempts ORDER BY id"
        ))).all()
    assert tuple(by_orm) == tuple(by_bulk)


async def test_among_finds_the_listed_rows_with_one_statement_text_for_every_length(db: Database):
    from core.bulk_sql import among

    async with db.write() as session:
        await insert_many(session, OutboxItem.__table__, [{"kind": f"k{n}", "payload": {}} for n in range(5)])
    with statements(db) as seen:
        async with db.read() as session:
            query = select(OutboxItem.kind).where(among(OutboxItem.kind, "kinds", session.get_bind().dialect.name))
            found = [sorted((await session.execute(query, {"kinds": kinds})).scalars())
                     for kinds in (["k1"], ["k0", "k3", "nope"], [])]
    assert found == [["k1"], ["k0", "k3"], []]
    if not db.is_sqlite:  # an expanding IN is a new statement for each length of list
        assert len(set(seen)) == 1, seen
