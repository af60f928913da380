"""Delivers outbox rows: claims due ones, runs their handlers, records outcomes.

A dispatcher claims rows under its own ``holder`` id for a short lease
(:data:`core.outbox.CLAIM_LEASE`) and renews the leases of every row it holds
every :data:`core.outbox.RENEW_EVERY` while it works, so:

- a slow handler that is alive keeps its row (no other worker posts it again);
- a worker killed with SIGKILL stops renewing, and another worker (or the
  restarted one) takes its rows over within the lease, a few seconds.

Outcomes finishing together are recorded together: one write transaction
(a locking read, one UPDATE, one INSERT of attempts, plus the handlers'
``effects`` such as where a Slack post landed) for all of them. A worker waits
for nothing to fill a group: while one transaction is in flight, outcomes
queue for the next, so an idle worker records each at once.

On SQLite claims and records join the process's group commit
(``Database.write_batched``) instead of taking transactions of their own:
claims and records were nearly half of ``deskbell run``'s commits under the
relay benchmark (bench/RESULTS.md). They join as background writes: visitor
lines queued beside them commit first, in a batch of their own, so an ack
never waits for the worker's bookkeeping; the claims and records then share
the next COMMIT with whatever has queued by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core import events as ev
from core.clock import utcnow
from core.db import Database
from core.events import EventBus
from core.metrics import Labels, Registry, labels
from core.outbox import (
    CLAIM_LEASE,
    RENEW_EVERY,
    Finished,
    OutboxItem,
    Outcome,
    claim_due,
    record_many,
    release,
    renew,
)
from core.wakeups import wait_for_wake

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[OutboxItem], Awaitable[Outcome]]
# Reads what a batch of claimed rows of one kind will need, in one query, before their
# handlers run (they read it themselves when it is missing).
Prefetch = Callable[[list[OutboxItem]], Awaitable[None]]
HANDLER_TIMEOUT_S = 60.0
# Results recorded per write transaction. On SQLite a transaction holds the write lock that a
# web process on the same file waits for; groups of 200 made visitors' acks wait for them
# (relay benchmark, web + worker on SQLite: ack p99 79 ms with 200, 58 ms with 40). On
# PostgreSQL nobody waits for it: fewer, larger record transactions.
RECORD_GROUP_MAX = 200
# Deliveries running at once. A worker killed mid-delivery may have posted each of them
# without recording it: at most this many come twice (at least once).
CONCURRENCY = 64
RECORD_GROUP_MAX_SQLITE = 40
ROOM_COALESCE_S = 0.02  # after a delivery finishes, wait this long so one claim serves several
# On PostgreSQL a claim or a record costs three to six round trips whatever its size, and
# under load each round trip waits for two processes to be scheduled: waiting this long
# before each lets one serve more rows. Relay benchmark, 300 lines/s: worker CPU 48 % -> 40 %,
# ack p99 112-174 -> 54 ms, Slack p50 unchanged (~20-25 ms). A line then waits up to this
# long more before the next line of its chat may go, well within Slack's pace of about
# one post per second per channel. SQLite keeps groups small instead: its record
# transaction holds the write lock that visitors' acks wait for.
PG_COALESCE_S = 0.05
STOP_GRACE_S = 5.0  # on stop, handlers already running get this long to finish and be recorded


class Dispatcher:
    def __init__(
        self,
        db: Database,
        bus: EventBus | None = None,
        *,
        batch: int = 50,
        concurrency: int = CONCURRENCY,
        max_in_flight: int | None = None,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
        metrics: Registry | None = None,
        lease: timedelta = CLAIM_LEASE,
        renew_every: timedelta = RENEW_EVERY,
        holder: str | None = None,
    ) -> None:
        self.db = db
        registry = metrics or Registry()
        self._outcomes = registry.counter("deskbell_deliveries_total", "Delivery attempts by kind and outcome.")
        self._latency = registry.histogram(
            "deskbell_delivery_latency_seconds",
            "From the change that owed a delivery to its success, by kind.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200),
        )
        self._platform_errors = registry.counter(
            "deskbell_platform_errors_total", "Failed deliveries by destination platform (slack, teams, email...)."
        )
        self._lost = registry.counter(
            "deskbell_outbox_leases_lost_total",
            "Rows this worker was delivering when another worker took them over (its lease renewals failed).",
        )
        self._record_txns = registry.counter(
            "deskbell_outbox_record_transactions_total", "Write transactions that recorded delivery attempts."
        )
        registry.gauge("deskbell_outbox_in_flight", "Outbox rows this worker has claimed and not yet recorded.", self._in_flight_gauge)
        self.handlers: dict[str, Handler] = {}
        self.prefetchers: dict[str, Prefetch] = {}
        self.batch = batch
        # Claim ahead only a little: rows a killed worker claimed wait out its lease, rows it
        # never claimed are taken at once by the next worker. A row stays in flight from its
        # claim until its result is committed, mostly waiting on round trips, not CPU: with
        # 32 deliveries and 64 in flight, Slack lagged the relay benchmark by 4.7 s (p50, 10 s
        # at 300 lines/s); with 64 and 256 by 2.3 s; more did not help (bench/RESULTS.md).
        self.max_in_flight = max_in_flight or max(batch, concurrency * 4)
        self.poll_s = poll_s
        self.clock = clock
        self.lease = lease
        self.renew_every = renew_every
        self.holder = holder or secrets.token_hex(8)
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._in_flight: dict[int, OutboxItem] = {}
        self._started: set[int] = set()  # in flight and handed to a handler
        self._lost_ids: set[int] = set()
        self._queue: list[tuple[Finished, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        if bus is not None:
            bus.subscribe(ev.OUTBOX_ENQUEUED, self._on_enqueued)

    def register(self, kind: str, handler: Handler, *, prefetch: Prefetch | None = None) -> None:
        """Deliver rows of ``kind`` with ``handler``; ``prefetch`` (optional) is given each
        claimed batch of them first, so a per-row read becomes one read per batch."""
        self.handlers[kind] = handler
        if prefetch is not None:
            self.prefetchers[kind] = prefetch
        else:
            self.prefetchers.pop(kind, None)

    async def _on_enqueued(self, _name: str, _data: dict[str, Any]) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _in_flight_gauge(self) -> dict[Labels, float]:
        return {labels(): float(len(self._in_flight))}

    # -- claiming ------------------------------------------------------------
    async def _transaction(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``fn(session)`` in a write transaction: on SQLite the group commit's, shared
        with whatever else this process writes at that moment (see the module
        docstring); on PostgreSQL one of its own. ``fn`` may run twice (alone,
        after a shared transaction failed), so it decides everything inside."""
        if self.db.is_sqlite:
            return await self.db.write_batched(fn, background=True)
        async with self.db.write() as session:
            return await fn(session)

    async def _claim(self, limit: int) -> list[OutboxItem]:
        kinds, now = list(self.handlers), self.clock()
        items = await self._transaction(
            lambda session: claim_due(session, kinds=kinds, limit=limit, now=now, holder=self.holder, lease=self.lease)
        )
        # A row of ours whose renewal came late is claimable again; we are still delivering it.
        fresh = [item for item in items if item.id not in self._in_flight]
        for item in fresh:
            self._in_flight[item.id] = item
        await self._prefetch(fresh)
        return fresh

    async def _prefetch(self, items: list[OutboxItem]) -> None:
        by_kind: dict[str, list[OutboxItem]] = {}
        for item in items:
            if item.kind in self.prefetchers:
                by_kind.setdefault(item.kind, []).append(item)
        for kind, group in by_kind.items():
            try:
                await self.prefetchers[kind](group)
            except Exception:  # each handler reads what it needs itself
                log.warning("prefetching %d %s deliveries failed; each reads its own", len(group), kind, exc_info=True)

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver them; return how many were tried."""
        if not self.handlers:
            return 0
        claimed = await self._claim(self.batch)
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    # -- delivering ----------------------------------------------------------
    async def _deliver(self, item: OutboxItem) -> None:
        try:
            async with self._slots:
                self._started.add(item.id)
                started = self.clock()
                try:
                    outcome = await asyncio.wait_for(self.handlers[item.kind](item), timeout=HANDLER_TIMEOUT_S)
                except asyncio.TimeoutError:
                    outcome = Outcome(False, detail=f"timed out after {HANDLER_TIMEOUT_S:.0f} s")
                except Exception as exc:  # a handler bug must not stop other deliveries
                    log.exception("delivery %s (%s) failed", item.id, item.kind)
                    outcome = Outcome(False, detail=f"{type(exc).__name__}: {exc}")
            try:
                await self._record(Finished(item, outcome, started, self.clock()))
            except Exception:  # the lease runs out and the row is delivered again: at least once
                log.exception("could not record delivery %s (%s); it will be retried", item.id, item.kind)
            self._count(item, outcome)
        finally:
            self._in_flight.pop(item.id, None)
            self._started.discard(item.id)
            self._lost_ids.discard(item.id)
            self._room.set()

    def _count(self, item: OutboxItem, outcome: Outcome) -> None:
        self._outcomes.inc(kind=item.kind, outcome="ok" if outcome.ok else "failed")
        if outcome.ok:
            self._latency.observe(max(0.0, (self.clock() - item.created_at).total_seconds()), kind=item.kind)
        else:
            self._platform_errors.inc(platform=item.kind.split(".", 1)[0])

    # -- recording -----------------------------------------------------------
    async def _record(self, finished: Finished) -> None:
        """Queue the outcome for the next group write and wait until it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((finished, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_queued())
        await future

    async def _record_queued(self) -> None:
        while self._queue:
            most = RECORD_GROUP_MAX_SQLITE if self.db.is_sqlite else RECORD_GROUP_MAX
            if not self.db.is_sqlite and len(self._queue) < most:
                await asyncio.sleep(PG_COALESCE_S)  # more outcomes, same round trips
            group, self._queue = self._queue[:most], self._queue[most:]
            try:
                await self._write_group([f for f, _ in group])
            except Exception:
                log.warning("recording %d deliveries together failed; recording them one by one", len(group), exc_info=True)
                for finished, future in group:
                    try:
                        await self._write_one(finished)
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(None)
                continue
            for _, future in group:
                if not future.done():
                    future.set_result(None)

    async def _write_group(self, group: list[Finished]) -> None:
        held = await self._transaction(lambda session: record_many(session, group, self.holder))
        self._record_txns.inc()
        self._note_lost(f.item for f in group if f.item.id not in held)

    async def _write_one(self, finished: Finished) -> None:
        try:
            await self._write_group([finished])
        except Exception:  # e.g. what the effects write conflicts: keep the delivery's state right at least
            log.exception("recording what delivery %s wrote failed; recording the attempt alone", finished.item.id)
            async with self.db.write() as session:
                held = await record_many(session, [finished], self.holder, effects=False)
            self._record_txns.inc()
            self._note_lost(finished.item for _ in [0] if finished.item.id not in held)

    def _note_lost(self, items: Any) -> None:
        for item in items:
            self._lost.inc(kind=item.kind)
            log.warning(
                "delivery %s (%s) was taken over by another worker while this one delivered it; "
                "it may reach its destination twice", item.id, item.kind,
            )

    # -- leases --------------------------------------------------------------
    async def renew_leases(self) -> None:
        """Extend the lease of every row in flight; note the ones another worker took."""
        ids = list(self._in_flight)
        if not ids:
            return
        async with self.db.write() as session:
            held = await renew(session, ids, self.holder, now=self.clock(), lease=self.lease)
        for item_id in ids:
            if item_id not in held and item_id in self._in_flight and item_id not in self._lost_ids:
                self._lost_ids.add(item_id)  # counted when its outcome cannot be recorded
                log.warning("lost the lease on delivery %s while delivering it (renewals came too late)", item_id)

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        every = self.renew_every.total_seconds()
        while not stop.is_set():
            await wait_for_wake(stop, every)
            try:
                await self.renew_leases()
            except Exception:
                log.warning("renewing outbox leases failed; retrying", exc_info=True)

    # -- the loop ------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop``: keep up to ``max_in_flight`` rows claimed; wake on new rows
        in this process, when room frees up, else poll."""
        keeper = asyncio.create_task(self._keep_leases(stop), name="outbox-leases")
        tasks: dict[int, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                self._wake.clear()
                self._room.clear()
                room = self.max_in_flight - len(self._in_flight)
                want = min(room, self.batch)
                claimed: list[OutboxItem] = []
                if want > 0 and self.handlers:
                    try:
                        claimed = await self._claim(want)
                    except Exception:
                        log.exception("outbox dispatch failed; retrying")
                    for item in claimed:
                        task = asyncio.create_task(self._deliver(item))
                        tasks[item.id] = task
                        task.add_done_callback(lambda t, i=item.id: tasks.pop(i) if tasks.get(i) is t else None)
                    if claimed and len(claimed) >= want:
                        await asyncio.sleep(0)  # let the new deliveries start, then claim more
                        continue
                # A finished delivery frees a slot and may unblock the next line of its
                # conversation (rows sharing an ordering_key go one at a time), so room is
                # always a reason to claim again, not only when we are full; otherwise a
                # backlog of ordered rows would move one line per conversation per poll.
                waits = {
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._room.wait()),
                }
                await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
                if self._room.is_set() and not self._wake.is_set() and not stop.is_set():
                    # let a few more finish: one claim for them
                    await asyncio.sleep(ROOM_COALESCE_S if self.db.is_sqlite else PG_COALESCE_S)
        finally:
            await self._stop(tasks)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper

    async def _stop(self, tasks: dict[int, asyncio.Task[None]]) -> None:
        """Give back rows not started yet; let running handlers finish briefly, then leave
        theirs to the lease (a handler cut off mid-post is delivered again: at least once)."""
        waiting = [item_id for item_id in tasks if item_id not in self._started and not tasks[item_id].done()]
        for item_id in waiting:  # still queued for a handler slot: nothing was sent, safe to cancel
            tasks[item_id].cancel()
        if waiting:
            try:
                async with self.db.write() as session:
                    await release(session, waiting, self.holder, now=self.clock())
            except Exception:
                log.warning("could not give back %d claimed deliveries; their lease will run out", len(waiting))
        pending = [t for t in tasks.values() if not t.done()]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
