"""Background writes for many widgets share transactions, and one bad item fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from core import write_each as we
from core.away_alerts import AwayAlertRunner
from core.db import Database
from core.digest_runs import DigestRunner
from core.models import OutboxItem, WidgetPresence
from core.outbox import enqueue
from tests.test_deliveries_helpers import Clock, add_agent, add_widget, outbox
from tests.test_digest import _offline, _widget, berlin


@contextmanager
def counting_commits(db: Database) -> Iterator[list[int]]:
    """The write transactions committed on ``db`` while the block runs (a list to read after)."""
    engine = db._write_engine.sync_engine
    count = [0]

    def committed(_conn) -> None:  # type: ignore[no-untyped-def]
        count[0] += 1

    event.listen(engine, "commit", committed)
    try:
        yield count
    finally:
        event.remove(engine, "commit", committed)


async def _kinds(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(select(OutboxItem.kind).order_by(OutboxItem.id))).scalars())


async def test_many_items_share_a_few_transactions_and_are_written_in_order(db: Database, monkeypatch):
    monkeypatch.setattr(we, "SHARE_S", 10.0)  # only SHARE_MAX (100) ends a transaction here
    async def write(session, n: int) -> int:  # type: ignore[no-untyped-def]
        enqueue(session, f"k{n}", {})
        return n * 10

    with counting_commits(db) as commits:
        done = await we.write_each(db, list(range(250)), write, lambda *_: None)
    assert done == [(n, n * 10) for n in range(250)]
    assert await _kinds(db) == [f"k{n}" for n in range(250)]
    assert commits[0] == 3  # 100, 100, 50


async def test_on_sqlite_a_shared_transaction_takes_no_more_items_once_it_has_run_its_time(db: Database, monkeypatch):
    """SQLite's write lock is the process's: visitors' lines wait for it. PostgreSQL's
    transaction locks only its own rows and may take its SHARE_MAX."""
    monkeypatch.setattr(we, "SHARE_S", 0.01)

    async def slow(session, n: int) -> int:  # type: ignore[no-untyped-def]
        enqueue(session, f"k{n}", {})
        await asyncio.sleep(0.02)  # longer than a shared transaction may run
        return n

    with counting_commits(db) as commits:
        done = await we.write_each(db, list(range(4)), slow, lambda *_: None)
    assert [n for n, _ in done] == [0, 1, 2, 3] and commits[0] == (4 if db.is_sqlite else 1)


async def test_an_item_that_fails_fails_alone_and_the_others_are_written(db: Database):
    failed: list[tuple[int, str]] = []

    async def write(session, n: int) -> int:  # type: ignore[no-untyped-def]
        enqueue(session, f"k{n}", {})
        if n == 7:
            raise ValueError("item 7 is bad")
        return n

    done = await we.write_each(db, list(range(20)), write, lambda n, exc: failed.append((n, str(exc))))
    assert [n for n, _ in done] == [n for n in range(20) if n != 7]
    assert failed == [(7, "item 7 is bad")]
    assert await _kinds(db) == [f"k{n}" for n in range(20) if n != 7]  # nothing of 7, the rest once


async def test_a_failing_commit_writes_each_item_again_alone(db: Database, monkeypatch):
    """A shared transaction that fails at COMMIT (not in an item): every item of it is
    written again in a transaction of its own, none twice."""
    commits_tried = [0]
    original = db.write

    def write(**kw):  # type: ignore[no-untyped-def]
        commits_tried[0] += 1
        if commits_tried[0] == 1:  # the first (shared) transaction: fails as it ends

            class Failing:
                async def __aenter__(self):  # type: ignore[no-untyped-def]
                    self.inner = original(**kw)
                    return await self.inner.__aenter__()

                async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
                    await self.inner.__aexit__(RuntimeError, RuntimeError("commit failed"), None)
                    raise RuntimeError("commit failed")

            return Failing()
        return original(**kw)

    monkeypatch.setattr(db, "write", write)

    async def item(session, n: int) -> int:  # type: ignore[no-untyped-def]
        enqueue(session, f"k{n}", {})
        return n

    done = await we.write_each(db, list(range(5)), item, lambda *_: None)
    assert [n for n, _ in done] == [0, 1, 2, 3, 4]
    assert await _kinds(db) == [f"k{n}" for n in range(5)]
    assert commits_tried[0] == 1 + 5


async def test_the_status_of_many_new_widgets_is_recorded_in_one_transaction(services, monkeypatch):
    monkeypatch.setattr(we, "SHARE_S", 10.0)  # however slow this machine is right now
    for n in range(60):
        await add_widget(services, name=f"Shop {n}")
    await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    with counting_commits(services.db) as commits:
        assert await AwayAlertRunner(services.db, clock=Clock()).run_once() == 0
    async with services.db.read() as session:
        assert len(list((await session.execute(select(WidgetPresence))).scalars())) == 60
    assert commits[0] == 1  # one transaction per widget before: 60


async def test_the_digests_of_many_widgets_due_together_share_a_transaction_each_sent_once(services, monkeypatch):
    monkeypatch.setattr(we, "SHARE_S", 10.0)
    widgets = [await _widget(services) for _ in range(30)]
    for n, widget in enumerate(widgets[:10]):
        await _offline(services, widget, berlin(2026, 11, 25, 7, 0), n)
    runner = DigestRunner(services.db, clock=Clock(berlin(2026, 11, 25, 9, 0)))
    with counting_commits(services.db) as commits:
        sent = await runner.run_once()
    assert sorted(d.widget_id for d in sent) == sorted(w.id for w in widgets)
    assert commits[0] == 1  # one transaction per widget before: 30
    assert len(await outbox(services.db, "slack.digest")) == 10  # the empty ones send nothing
    assert await runner.run_once() == []
