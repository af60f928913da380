"""Group commit: many small write transactions share one BEGIN ... COMMIT.

Visitor lines and offline-form submissions are tiny transactions (an INSERT
or two) whose cost is mostly the transaction itself: BEGIN, COMMIT and its
fsync, and on SQLite the process's write lock held across every await. A
:class:`GroupCommitter` queues such writes; a writer task takes everything
queued, runs each write in turn in one transaction and commits once. Only
then is every caller's ``submit`` answered, so an ack or a 201 still means
"committed" — the durability promise is unchanged, only its cost is shared.

Rules the writes must follow:

* A write is a coroutine function ``fn(session)``. It may run more than once
  (see below), so it must build everything it adds inside the call and do
  its validation before it is submitted (a validation error there makes the
  whole batch retry singly: correct, only slower).
* Writes in one batch run one after another in submission order, in the
  same transaction: a later write sees the earlier ones' rows (a resent
  ``client_id``, the conversation's ``last_seq``).
* If any write of a batch raises (or the COMMIT fails), the transaction is
  rolled back and each write of the batch runs again alone, in its own
  transaction: one bad write fails only its own caller.
* A caller is answered only after the COMMIT that holds its write returned.
  If the process dies before that, nobody was told "stored".

A write may also offer a *bulk* form (:class:`Bulk`): a writer shared by all
writes of its kind and the write's own payload. In a batch, the writes
offering the same writer are handed to it together, once, so a batch of
chat lines costs a few statements instead of a few per line (on PostgreSQL
every statement is a round trip, and under CPU contention round trips, not
work, decided how fast a lane committed). The writer answers each payload
with its result, or None for "write this one with its own function" (it
runs after the writer, in the same transaction). It must leave the writes
of one ``key`` either all to itself or all to their functions, so their
order holds. If it raises, the batch is rolled back and each write runs
again alone through its function, as above. A bulk form that is cheaper
than the write's own function even for one write (``alone``) is used for a
batch of one too.

A bulk form may also offer ``first``: a writer that stores what it can in
one statement committing on its own (``Database.driver_statement``,
PostgreSQL), before the batch's transaction; it gets the payloads alone and
opens what it needs itself. Its callers are answered at once; what it
answers None for goes on into the transaction as above. A write of one
``key`` must be left to the transaction only after those before it (the
writer stores in order and leaves out only writes that are no-ops or go
first to a chat anyway).

A write may be marked ``background`` (nobody waits on it: the worker's
claims and records on SQLite). When the queue holds both kinds, the writes
someone waits on make a batch of their own and the background ones wait for
the next batch, which takes everything queued by then: held back once, never
twice in a row, however many lines keep coming.

On PostgreSQL several lanes commit in parallel (they use different pool
connections); writes with the same ``key`` always use the same lane, so the
writes of one conversation stay in order and two batches never lock the
same rows in opposite orders. SQLite has one writer per process anyway: one
lane.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[AsyncSession], Awaitable[T]]

MAX_BATCH = 200  # bounds the time one transaction holds the SQLite lock (a few ms per 100)
PG_LANES = 4


@dataclass(frozen=True)
class Bulk(Generic[T]):
    """The bulk form of a write: ``writer(session, payloads)`` answers each payload
    with its write's result, or None for "run its function instead"."""

    writer: Callable[[AsyncSession, list[Any]], Awaitable[list[T | None]]]
    payload: Any
    alone: bool = False  # worth it for a single write too (fewer statements than its function)
    first: Callable[[list[Any]], Awaitable[list[T | None]]] | None = None


@dataclass
class _Item(Generic[T]):
    fn: Write[T]
    future: asyncio.Future[T]
    bulk: Bulk[T] | None = None
    background: bool = False


_NOT_YET = object()


@dataclass
class _Lane:
    queue: deque[_Item[Any]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    held_back: bool = False  # the last batch left background writes queued


@dataclass
class Stats:
    """What the committer did (tests and benchmarks look at these)."""

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0
    retried_singly: int = 0
    stored_first: int = 0  # writes a ``first`` writer stored, outside the batch's transaction


class GroupCommitter:
    def __init__(self, db: Database, *, lanes: int | None = None, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._lanes = [_Lane() for _ in range(lanes or (1 if db.is_sqlite else PG_LANES))]
        self._next_lane = itertools.count()
        self.stats = Stats()

    async def submit(
        self, fn: Write[T], *, key: Hashable | None = None, bulk: Bulk[T] | None = None, background: bool = False
    ) -> T:
        """Run ``fn(session)`` in a shared transaction; return its result once committed.

        Raises what ``fn`` raised when it ran alone, or the commit's error.
        Cancelling the caller does not withdraw a write already queued: it
        may still commit (writes are idempotent where a client may retry); the
        writer answers only futures that are not done. The future is awaited
        as it is, not through ``asyncio.shield``: a shield's extra callback put
        each answer one more turn of a busy event loop behind the commit.
        """
        n = len(self._lanes)
        lane = self._lanes[(hash(key) if key is not None else next(self._next_lane)) % n]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        lane.queue.append(_Item(fn, future, bulk, background))
        if lane.task is None or lane.task.done():
            lane.task = asyncio.ensure_future(self._drain(lane))
        return await future

    async def _drain(self, lane: _Lane) -> None:
        """Commit batches until the lane's queue is empty; the next submit starts a new task."""
        while lane.queue:
            batch = self._next_batch(lane)
            try:
                await self._commit(batch)
                if lane.queue:
                    # Let this batch's callers send their acks before the next batch: on
                    # SQLite a batch runs without yielding, so they would wait for it.
                    await asyncio.sleep(0)
            except BaseException as exc:  # cancelled at shutdown: nobody may wait forever
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("writer stopped"))
                for item in lane.queue:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("writer stopped"))
                lane.queue.clear()
                raise

    def _next_batch(self, lane: _Lane) -> list[_Item[Any]]:
        """The queue's next batch: writes someone waits on go without the background ones
        queued beside them (a worker's records), which then go in the next batch with
        everything queued by then, so they wait one batch at most."""
        if not lane.held_back and any(item.background for item in lane.queue):
            waited_on = [item for item in lane.queue if not item.background][: self.max_batch]
            if waited_on:
                lane.held_back = True
                taken = set(map(id, waited_on))
                lane.queue = deque(item for item in lane.queue if id(item) not in taken)
                return waited_on
        lane.held_back = False
        return [lane.queue.popleft() for _ in range(min(self.max_batch, len(lane.queue)))]

    @staticmethod
    async def _run_batch(session: AsyncSession, batch: list[_Item[Any]]) -> list[Any]:
        """Every write of a batch in one transaction: bulk writers first, then the rest in order."""
        results: list[Any] = [_NOT_YET] * len(batch)
        by_writer: dict[Any, list[int]] = {}
        for i, item in enumerate(batch):
            if item.bulk is not None:
                by_writer.setdefault(item.bulk.writer, []).append(i)
        for writer, indexes in by_writer.items():
            if len(indexes) < 2 and not batch[indexes[0]].bulk.alone:  # type: ignore[union-attr]
                continue  # alone, its own function is as cheap
            answers = await writer(session, [batch[i].bulk.payload for i in indexes])  # type: ignore[union-attr]
            if len(answers) != len(indexes):
                raise RuntimeError(f"bulk writer {writer!r} answered {len(answers)} of {len(indexes)} writes")
            for i, answer in zip(indexes, answers):
                if answer is not None:
                    results[i] = answer
        for i, item in enumerate(batch):
            if results[i] is _NOT_YET:
                results[i] = await item.fn(session)
        return results

    async def _store_first(self, batch: list[_Item[Any]]) -> list[_Item[Any]]:
        """Hand each ``first`` writer its writes; answer those it stored; return the rest."""
        by_writer: dict[Any, list[int]] = {}
        for i, item in enumerate(batch):
            if item.bulk is not None and item.bulk.first is not None:
                by_writer.setdefault(item.bulk.first, []).append(i)
        if not by_writer:
            return batch
        stored: set[int] = set()
        for writer, indexes in by_writer.items():
            try:
                answers = await writer([batch[i].bulk.payload for i in indexes])  # type: ignore[union-attr]
            except Exception:
                # Nothing is answered: the transaction writes them all (a write the statement
                # committed before failing is found there, by its client_id, as a resend).
                log.debug("a one-statement write of %d failed; the batch's transaction writes them", len(indexes), exc_info=True)
                continue
            if len(answers) != len(indexes):
                raise RuntimeError(f"first writer {writer!r} answered {len(answers)} of {len(indexes)} writes")
            for i, answer in zip(indexes, answers):
                if answer is not None:
                    stored.add(i)
                    if not batch[i].future.done():
                        batch[i].future.set_result(answer)
        self.stats.stored_first += len(stored)
        return [item for i, item in enumerate(batch) if i not in stored]

    async def _commit(self, batch: list[_Item[Any]]) -> None:
        self.stats.batches += 1
        self.stats.writes += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        batch = await self._store_first(batch)
        if not batch:
            return
        if len(batch) > 1 or (batch[0].bulk is not None and batch[0].bulk.alone):
            try:
                async with self.db.write(urgent=True) as session:
                    results = await self._run_batch(session, batch)
            except Exception:
                log.debug("a batch of %d writes failed; each runs again alone", len(batch), exc_info=True)
                self.stats.retried_singly += len(batch)
            else:  # committed: now, and only now, everyone may hear "stored"
                for item, result in zip(batch, results):
                    if not item.future.done():
                        item.future.set_result(result)
                return
        for item in batch:
            try:
                async with self.db.write(urgent=True) as session:
                    result = await item.fn(session)
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)
