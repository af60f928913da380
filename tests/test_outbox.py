"""The outbox: written with the change, delivered once, retried with backoff, never lost."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from core.db import Database
from core.dispatch import Dispatcher
from core.models import DeliveryAttempt, OutboxItem, Widget
from core.outbox import Outcome, enqueue, next_delay, retry_dead

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


async def _items(db: Database) -> list[OutboxItem]:
    async with db.read() as session:
        return list((await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars())


async def _enqueue(db: Database, kind: str = "test", n: int = 1, **kw) -> None:  # type: ignore[no-untyped-def]
    async with db.write() as session:
        for i in range(n):
            item = enqueue(session, kind, {"n": i}, **kw)
            item.next_attempt_at = T0


async def test_a_row_exists_only_if_the_change_that_wrote_it_commits(db: Database):
    try:
        async with db.write() as session:
            enqueue(session, "test", {"n": 1})
            session.add(Widget(key="k", name="x"))  # missing required columns: the commit fails
    except Exception:
        pass
    assert await _items(db) == []


async def test_a_delivered_row_is_done_with_its_attempt_logged(db: Database):
    clock = Clock()
    seen: list[dict] = []  # type: ignore[type-arg]

    async def handler(item: OutboxItem) -> Outcome:
        seen.append(item.payload)
        return Outcome(True, status_code=200, result={"ts": "1.2"})

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", handler)
    await _enqueue(db)
    assert await dispatcher.run_once() == 1
    assert await dispatcher.run_once() == 0
    [item] = await _items(db)
    assert (item.status, item.attempts, item.result) == ("done", 1, {"ts": "1.2"})
    assert seen == [{"n": 0}]
    async with db.read() as session:
        [attempt] = (await session.execute(select(DeliveryAttempt))).scalars()
    assert attempt.ok and attempt.status_code == 200


async def test_failures_follow_the_backoff_schedule_then_go_dead(db: Database):
    clock = Clock()
    tries = 0

    async def failing(item: OutboxItem) -> Outcome:
        nonlocal tries
        tries += 1
        return Outcome(False, status_code=500, detail="boom")

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", failing)
    await _enqueue(db)
    await dispatcher.run_once()
    [item] = await _items(db)
    assert item.status == "pending" and item.last_error == "boom"
    assert timedelta(seconds=4.4) <= item.next_attempt_at - T0 <= timedelta(seconds=5.6)
    assert await dispatcher.run_once() == 0  # not due yet
    for _ in range(10):
        clock.advance(hours=11)
        await dispatcher.run_once()
    [item] = await _items(db)
    assert item.status == "dead" and tries == 8  # the first try and seven retries


async def test_a_crash_mid_delivery_leads_to_a_retry_not_a_loss(db: Database):
    clock = Clock()
    await _enqueue(db)
    from core.outbox import claim_due

    async with db.write() as session:  # a worker claims the row, then dies
        assert len(await claim_due(session, kinds=["test"], limit=10, now=clock())) == 1
    delivered: list[int] = []

    async def handler(item: OutboxItem) -> Outcome:
        delivered.append(item.id)
        return Outcome(True)

    survivor = Dispatcher(db, clock=clock)
    survivor.register("test", handler)
    assert await survivor.run_once() == 0  # the lease still holds
    clock.advance(minutes=3)
    assert await survivor.run_once() == 1
    assert len(delivered) == 1


async def test_rows_with_one_ordering_key_are_delivered_one_at_a_time_in_order(db: Database):
    clock = Clock()
    order: list[int] = []
    fail_first = True

    async def handler(item: OutboxItem) -> Outcome:
        nonlocal fail_first
        if item.payload["n"] == 0 and fail_first:
            fail_first = False
            return Outcome(False, detail="slack down")
        order.append(item.payload["n"])
        return Outcome(True)

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", handler)
    await _enqueue(db, n=3, ordering_key="thread:1")
    await dispatcher.run_once()
    assert order == []  # the root failed, so its replies wait
    clock.advance(seconds=10)
    await dispatcher.run_once()
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert order == [0, 1, 2]


async def test_throttled_deliveries_wait_as_told_without_using_up_retries(db: Database):
    clock = Clock()

    async def throttled(item: OutboxItem) -> Outcome:
        return Outcome(False, status_code=429, detail="rate_limited", retry_after=30)

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", throttled)
    await _enqueue(db)
    for _ in range(12):
        await dispatcher.run_once()
        clock.advance(seconds=31)
    [item] = await _items(db)
    assert item.status == "pending" and item.attempts == 12


async def test_a_permanent_failure_is_dead_at_once_and_can_be_retried(db: Database):
    clock = Clock()
    outcomes = [Outcome(False, status_code=410, detail="gone", permanent=True), Outcome(True)]

    async def handler(item: OutboxItem) -> Outcome:
        return outcomes.pop(0)

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", handler)
    await _enqueue(db)
    await dispatcher.run_once()
    [item] = await _items(db)
    assert item.status == "dead"
    async with db.write() as session:
        await retry_dead(session, item.id)
    clock.now = datetime.now(timezone.utc) + timedelta(seconds=1)
    await dispatcher.run_once()
    [item] = await _items(db)
    assert item.status == "done"


async def test_handler_errors_and_timeouts_are_recorded_as_failures(db: Database):
    clock = Clock()

    async def broken(item: OutboxItem) -> Outcome:
        raise ConnectionError("refused")

    dispatcher = Dispatcher(db, clock=clock)
    dispatcher.register("test", broken)
    await _enqueue(db)
    await dispatcher.run_once()
    [item] = await _items(db)
    assert item.status == "pending" and "ConnectionError: refused" in (item.last_error or "")


async def test_two_dispatchers_never_deliver_a_row_twice(db: Database):
    clock = Clock()
    delivered: list[int] = []

    async def slow(item: OutboxItem) -> Outcome:
        await asyncio.sleep(0.01)
        delivered.append(item.payload["n"])
        return Outcome(True)

    other_db = Database(db.url)
    try:
        workers = [Dispatcher(db, clock=clock, batch=7), Dispatcher(other_db, clock=clock, batch=7)]
        for w in workers:
            w.register("test", slow)
        await _enqueue(db, n=60)
        for _ in range(6):
            await asyncio.gather(*(w.run_once() for w in workers))
        assert sorted(delivered) == list(range(60))
    finally:
        await other_db.dispose()


def test_the_retry_schedule_is_about_5s_5m_30m_2h_5h_10h_10h():
    import random

    rng = random.Random(1)
    delays = [next_delay(n, rng) for n in range(1, 9)]
    assert delays[-1] is None
    for got, want in zip(delays[:-1], (5, 300, 1800, 7200, 18000, 36000, 36000)):
        assert want * 0.9 <= got <= want * 1.1  # type: ignore[operator]


async def test_unregistered_kinds_are_left_for_a_worker_that_can_deliver_them(db: Database):
    dispatcher = Dispatcher(db, clock=Clock())
    dispatcher.register("email", lambda item: None)  # type: ignore[arg-type,return-value]
    await _enqueue(db, kind="slack.post")
    assert await dispatcher.run_once() == 0
    [item] = await _items(db)
    assert item.status == "pending"


async def test_outcomes_finishing_together_are_recorded_in_one_transaction_with_their_effects(db: Database):
    written: list[int] = []

    def effect(n: int):  # type: ignore[no-untyped-def]
        async def write(session) -> None:  # type: ignore[no-untyped-def]
            written.append(n)

        return write

    gate = asyncio.Event()

    async def handler(item: OutboxItem) -> Outcome:
        await gate.wait()
        return Outcome(True, result={"n": item.payload["n"]}, effects=effect(item.payload["n"]))

    dispatcher = Dispatcher(db, clock=Clock(), batch=20)
    dispatcher.register("test", handler)
    await _enqueue(db, n=20)
    run = asyncio.create_task(dispatcher.run_once())
    await asyncio.sleep(0.1)
    gate.set()
    assert await run == 20
    assert sorted(written) == list(range(20))
    # one transaction for the first outcome, then the rest queued behind it: far fewer than 20
    assert dispatcher._record_txns.values[()] <= 3
    items = await _items(db)
    assert {i.status for i in items} == {"done"} and all(i.attempts == 1 and i.claimed_by is None for i in items)
    async with db.read() as session:
        assert len(list((await session.execute(select(DeliveryAttempt))).scalars())) == 20


async def test_a_worker_that_lost_its_row_does_not_overwrite_what_the_new_holder_records(db: Database):
    from core.outbox import Finished, claim_due, record_many

    clock = Clock()
    await _enqueue(db)
    async with db.write() as session:
        [mine] = await claim_due(session, kinds=["test"], limit=1, now=clock(), holder="a", lease=timedelta(seconds=6))
    clock.advance(seconds=7)  # "a" stopped renewing; "b" takes the row over and fails it
    async with db.write() as session:
        [theirs] = await claim_due(session, kinds=["test"], limit=1, now=clock(), holder="b", lease=timedelta(seconds=6))
    async with db.write() as session:
        assert await record_many(session, [Finished(theirs, Outcome(False, detail="b failed"), clock(), clock())], "b") == {theirs.id}
    async with db.write() as session:  # "a" finishes late: fenced out
        assert await record_many(session, [Finished(mine, Outcome(True), clock(), clock())], "a") == set()
    [item] = await _items(db)
    assert (item.status, item.attempts, item.last_error) == ("pending", 1, "b failed")


async def test_a_backlog_of_ordered_rows_drains_without_waiting_for_polls(db: Database):
    """Each finished line unblocks the next one of its conversation: the loop must claim again
    at once, not after ``poll_s`` (that cost one line per conversation per second under load)."""
    clock = Clock()
    delivered: list[tuple[str, int]] = []

    async def post(item: OutboxItem) -> Outcome:
        await asyncio.sleep(0.001)
        delivered.append((item.ordering_key or "", item.payload["n"]))
        return Outcome(True)

    for conversation in range(10):
        await _enqueue(db, n=8, ordering_key=f"thread:{conversation}")
    dispatcher = Dispatcher(db, clock=clock, poll_s=30.0)  # a poll would never come in time
    dispatcher.register("test", post)
    stop = asyncio.Event()
    runner = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(15):
            while len(delivered) < 80:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await runner
    for conversation in range(10):  # and each conversation still in order
        assert [n for key, n in delivered if key == f"thread:{conversation}"] == list(range(8))


async def test_new_rows_of_outcomes_recorded_together_are_one_insert_and_keep_existing_rows(db: Database):
    """Where posts landed (NewRows effects) goes in with the attempts: one INSERT per table
    for the group, and a row already there (a retried post's first link) is kept, not an error."""
    from sqlalchemy import event

    from core.models import ProcessedEvent
    from core.outbox import Finished, NewRows, claim_due, record_many

    table = ProcessedEvent.__table__
    clock = Clock()
    await _enqueue(db, n=5)
    async with db.write() as session:
        session.add(ProcessedEvent(source="test", event_id="e2"))  # recorded by an earlier attempt
    async with db.write() as session:
        items = await claim_due(session, kinds=["test"], limit=5, now=clock(), holder="w", lease=timedelta(seconds=6))
    called: list[int] = []

    async def plain(session) -> None:  # type: ignore[no-untyped-def]
        called.append(1)  # an effect of any other form still runs

    finished = [
        Finished(item, Outcome(True, effects=NewRows(((table, {"source": "test", "event_id": f"e{n}"}),))), clock(), clock())
        for n, item in enumerate(items)
    ]
    finished[0] = Finished(items[0], Outcome(True, effects=plain), clock(), clock())
    inserts: list[tuple[str, int]] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "processed_events" in statement and statement.lstrip().upper().startswith("INSERT"):
            # SQLite: an executemany of 4 rows; PostgreSQL: one statement of arrays of 4 values.
            inserts.append((statement, len(parameters) if executemany else len(parameters[0])))

    def count_driver(statement: str, rows: int) -> None:  # SQLite: run on the transaction's connection
        if "processed_events" in statement and statement.lstrip().upper().startswith("INSERT"):
            inserts.append((statement, rows))

    engine = db._write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    db.driver_listeners.append(count_driver)
    try:
        async with db.write() as session:
            assert await record_many(session, finished, "w") == {item.id for item in items}
    finally:
        event.remove(engine, "before_cursor_execute", count)
        db.driver_listeners.remove(count_driver)
    assert len(inserts) == 1 and inserts[0][1] == 4, inserts
    assert called == [1]
    async with db.read() as session:
        rows = (await session.execute(select(ProcessedEvent.event_id, ProcessedEvent.id).order_by(ProcessedEvent.id))).all()
    assert [r.event_id for r in rows] == ["e2", "e1", "e3", "e4"]  # e2 kept as it was, first
    assert {i.status for i in await _items(db)} == {"done"}


async def _claim_and_its_plans(db: Database, limit: int) -> tuple[list[OutboxItem], list[list[str]]]:
    """Claim up to ``limit`` "test" rows; return them and the claim statement's plans: on
    SQLite one, on PostgreSQL one with statistics and one made before the table had any
    (a new deployment's first minute)."""
    from sqlalchemy import event

    from core.outbox import claim_due

    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("UPDATE outbox SET status"):
            seen.append((statement, parameters))

    engine = db._write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        async with db.write() as session:
            claimed = await claim_due(session, kinds=["test"], limit=limit, holder="w", lease=timedelta(seconds=6))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = seen
    async with db.read() as session:
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        if db.is_sqlite:
            return claimed, [[row[3] for row in raw.raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]]
        await raw.execute("ANALYZE outbox")
        plans = [[row[0] for row in await raw.fetch("EXPLAIN " + statement, *parameters)]]
        await raw.execute("DELETE FROM pg_statistic WHERE starelid = 'outbox'::regclass")
        await raw.execute("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'outbox'::regclass")
        plans.append([row[0] for row in await raw.fetch("EXPLAIN " + statement, *parameters)])
        return claimed, plans


async def _outbox_of(db: Database, rows: list[dict[str, Any]], done_up_to: int) -> None:
    from sqlalchemy import text

    async with db.write() as session:
        await session.execute(OutboxItem.__table__.insert(), rows)
        await session.execute(text("UPDATE outbox SET status = 'done' WHERE id <= :last"), {"last": done_up_to})


async def test_a_claim_asks_only_open_rows_whether_an_earlier_one_of_its_key_is_owed(db: Database):
    """The ordering probe uses the partial index of open rows: a thread's delivered history,
    however long, is not walked for every due row of every claim."""
    from core.outbox import outbox_row

    await _outbox_of(db, [outbox_row("test", {"n": i}, ordering_key=f"chat-{i % 50}") for i in range(3000)], 2900)
    claimed, plans = await _claim_and_its_plans(db, limit=50)
    assert len(claimed) == 50 and len({item.ordering_key for item in claimed}) == 50  # one per key, in order
    assert all(int(item.payload["n"]) >= 2900 for item in claimed)
    for plan in plans:
        assert any("ix_outbox_open_ordering" in line for line in plan), plan


async def test_on_sqlite_claims_and_records_join_the_group_commit_after_the_lines_beside_them(db: Database):
    """``deskbell run`` on SQLite: the worker's claim and its record of outcomes go through
    the group commit, not transactions of their own, but as background writes: a line queued
    beside them commits first, in a batch of its own, and they follow in the next batch (an
    ack does not wait for the worker's bookkeeping). On PostgreSQL they keep transactions of
    their own (another process, another lane)."""
    gate = asyncio.Event()

    async def handler(item: OutboxItem) -> Outcome:
        await gate.wait()
        return Outcome(True)

    async def line(session) -> None:  # type: ignore[no-untyped-def]
        enqueue(session, "line", {})  # a kind nobody here delivers

    async def busy_committer(*concurrent):  # type: ignore[no-untyped-def]
        """Run ``concurrent`` while a batch is being written: what they submit queues for the next one."""
        held = asyncio.Event()

        async def slow(session) -> None:  # type: ignore[no-untyped-def]
            await held.wait()

        writing = asyncio.create_task(db.write_batched(slow))
        await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(c) for c in concurrent]
        await asyncio.sleep(0.05)
        held.set()
        await writing
        return await asyncio.gather(*tasks)

    dispatcher = Dispatcher(db, clock=Clock(), batch=5)
    dispatcher.register("test", handler)
    await _enqueue(db, n=3)
    await db.write_batched(line)  # the group committer exists; its counts start here
    stats = db.group_commit.stats  # type: ignore[union-attr]
    before = (stats.batches, stats.writes)
    claimed, _ = await busy_committer(dispatcher._claim(5), db.write_batched(line))
    assert len(claimed) == 3
    deliveries = [asyncio.create_task(dispatcher._deliver(item)) for item in claimed]
    await asyncio.sleep(0.05)
    gate.set()
    await busy_committer(db.write_batched(line), *deliveries)
    if db.is_sqlite:  # a slow batch, the line, then the claim; a slow batch, the line, then the outcomes
        assert (stats.batches - before[0], stats.writes - before[1]) == (6, 6)
    else:  # the claim and the outcomes went on their own
        assert (stats.batches - before[0], stats.writes - before[1]) == (4, 4)
    items = await _items(db)
    assert all(i.claimed_by is None for i in items)
    assert sorted(i.kind for i in items) == ["line"] * 3 + ["test"] * 3
    assert {i.status for i in items if i.kind == "test"} == {"done"}


async def test_a_claim_takes_run_out_leases_first_and_never_more_than_its_limit(db: Database):
    from core.outbox import claim_due

    clock = Clock()
    await _enqueue(db, n=3)
    async with db.write() as session:  # a worker claims two rows, then dies
        dead_worker = await claim_due(session, kinds=["test"], limit=2, now=clock(), holder="dead", lease=timedelta(seconds=6))
    await _enqueue(db, n=3)  # four rows due now, two leases running out later
    clock.advance(seconds=10)
    async with db.write() as session:
        first = await claim_due(session, kinds=["test"], limit=3, now=clock(), holder="w", lease=timedelta(seconds=6))
        second = await claim_due(session, kinds=["test"], limit=3, now=clock(), holder="w", lease=timedelta(seconds=6))
        third = await claim_due(session, kinds=["test"], limit=3, now=clock(), holder="w", lease=timedelta(seconds=6))
    assert len(first) == 3 and {item.id for item in dead_worker} <= {item.id for item in first}
    assert len(second) == 3 and third == []
    assert len({item.id for item in first + second}) == 6


async def test_a_claim_reads_its_partial_indexes_in_order_even_without_statistics(db: Database):
    """Each branch of the claim reads its partial index in the index's order: on PostgreSQL a
    bitmap read of both statuses visited every entry the rows' earlier versions left since
    the last VACUUM (thousands per claim under load); an ordered read marks them dead."""
    from core.outbox import outbox_row

    # A worker's table: mostly delivered, a few rows owed.
    await _outbox_of(db, [outbox_row("test", {"n": i}) for i in range(2000)], 1980)
    claimed, plans = await _claim_and_its_plans(db, limit=50)
    assert len(claimed) == 20
    for plan in plans:
        for index in ("ix_outbox_pending_due", "ix_outbox_lease"):
            assert any(index in line for line in plan), plan
        assert not any("Bitmap" in line for line in plan), "\n".join(plan)
        assert not any("USE TEMP B-TREE FOR ORDER BY" in line for line in plan), plan


async def test_renewals_and_records_locking_the_same_rows_side_by_side_never_deadlock(db: Database):
    """A worker renews the leases of the rows it delivers while it records others, in
    transactions side by side. Each took its rows' locks in the order its scan met them,
    and on PostgreSQL two such transactions deadlocked now and then (seen in the soak
    benchmark: a renewal failed). All take them in the order of the ids now."""
    import random

    from sqlalchemy import update

    from core.clock import utcnow
    from core.outbox import _held_statement, outbox_row, renew

    await _outbox_of(db, [outbox_row("test", {"n": i}) for i in range(300)], 0)
    async with db.write() as session:
        await session.execute(update(OutboxItem).values(status="delivering", claimed_by="w1", locked_until=utcnow() + timedelta(minutes=5)))
        ids = list((await session.execute(select(OutboxItem.id))).scalars())
    for _ in range(3):  # rows updated in a random order: the table's order is no longer the ids'
        async with db.write() as session:
            for item_id in random.sample(ids, 150):
                await session.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(attempts=OutboxItem.attempts + 1))
    rng = random.Random(7)
    failures: list[BaseException] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.0

    async def renewing() -> None:
        while loop.time() < until:
            try:
                async with db.write() as session:
                    assert len(await renew(session, rng.sample(ids, 200), "w1")) == 200
            except Exception as exc:  # noqa: BLE001 - counted, the test fails on any
                failures.append(exc)

    async def recording() -> None:
        statement = _held_statement(db.dialect)
        while loop.time() < until:
            try:
                async with db.write() as session:
                    held = (await session.execute(statement, {"ids": rng.sample(ids, 60), "holder": "w1"})).scalars().all()
                    assert len(held) == 60
                    await asyncio.sleep(0.001)  # the record's other statements, locks held
            except Exception as exc:  # noqa: BLE001
                failures.append(exc)

    await asyncio.gather(renewing(), renewing(), recording(), recording(), recording())
    assert failures == []


async def test_a_stopping_worker_hands_back_only_the_rows_it_still_holds(db: Database):
    """``release``: rows claimed but never started go back to pending, due at once, held by
    nobody; a row another worker holds now is left to it."""
    from core.outbox import claim_due, outbox_row, release

    await _outbox_of(db, [outbox_row("test", {"n": i}) for i in range(4)], 0)
    async with db.write() as session:
        mine = await claim_due(session, kinds=["test"], limit=3, holder="w1")
        theirs = await claim_due(session, kinds=["test"], limit=3, holder="w2")
    assert len(mine) == 3 and len(theirs) == 1
    async with db.write() as session:
        handed = await release(session, [item.id for item in mine[:2]] + [theirs[0].id], "w1")
    assert handed == 2
    async with db.read() as session:
        rows = {row.id: row for row in (await session.execute(select(OutboxItem))).scalars()}
    assert [(rows[i.id].status, rows[i.id].claimed_by) for i in mine] == [("pending", None), ("pending", None), ("delivering", "w1")]
    assert (rows[theirs[0].id].status, rows[theirs[0].id].claimed_by) == ("delivering", "w2")
