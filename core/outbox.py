"""The outbox: every outbound delivery is a row written in the transaction
that caused it, so a crash can delay a delivery but never lose it.

A dispatcher (in the worker) claims due rows, hands each to the handler
registered for its ``kind`` (email, webhook, a Slack post...), records every
attempt, and reschedules failures with backoff until they are delivered or
marked dead. Rows sharing an ``ordering_key`` (one chat thread, say) are
delivered one at a time in id order, so a reply never overtakes the message
that opens its thread.

Leases: a worker claims rows for :data:`CLAIM_LEASE` (a few seconds) under
its ``holder`` id and renews them while their handlers run, so a SIGKILLed
worker's rows are taken over within seconds while a slow but alive one keeps
its rows. Finishing is fenced on ``claimed_by``: a worker that lost a row
(renewals failed) cannot overwrite what the new holder records.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, and_, bindparam, exists, func, insert, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.bulk_sql import among, insert_many, update_many
from core.clock import iso, utcnow
from core.models import DeliveryAttempt, OutboxItem, detached

# About 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: the Standard Webhooks schedule.
RETRY_DELAYS_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
LEASE = timedelta(minutes=2)  # a claim nobody renews (the CLI's test-send): claimed again after this
CLAIM_LEASE = timedelta(seconds=6)  # a worker's claim, renewed every RENEW_EVERY while its handler runs
RENEW_EVERY = timedelta(seconds=1.5)
MAX_THROTTLED_ATTEMPTS = 100


@dataclass(frozen=True)
class Outcome:
    """What a handler reports. ``permanent`` failures go dead at once (a 410, a bad address);
    ``retry_after`` honours the other side's wish (HTTP 429 Retry-After)."""

    ok: bool
    status_code: int | None = None
    detail: str | None = None
    retry_after: float | None = None
    permanent: bool = False
    result: dict[str, Any] | None = None  # e.g. the Slack ts of a posted root message
    # Rows to write in the same transaction as the attempt (where a post landed: MessageLink,
    # ThreadLink), so a delivered line costs one write transaction, not three. A
    # :class:`NewRows` is batched with those of other attempts recorded together.
    effects: Callable[[AsyncSession], Awaitable[None]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class NewRows:
    """An outcome's effect that only adds rows, keeping any that exist already (same unique key).

    :func:`record_many` writes the rows of every such effect of a group in one
    INSERT per table, instead of an ORM flush per object while the worker
    holds SQLite's write lock (a group of 40 first lines, each opening a
    thread, held it 25 ms that way). Keeping an existing row is what a
    retried post needs: the link it recorded the first time stays.
    """

    rows: tuple[tuple[Table, dict[str, Any]], ...]  # (table, row), in the order they are inserted

    async def __call__(self, session: AsyncSession) -> None:
        await _run_effects(session, [self])  # alone: the same INSERTs as in a group


async def insert_new(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (all with the same columns) into ``table``, skipping those whose unique key exists."""
    await insert_many(session, table, rows, skip_existing=True)


def outbox_row(
    kind: str,
    payload: dict[str, Any],
    *,
    ordering_key: str | None = None,
    ref: tuple[str, int] | None = None,
    delay_s: float = 0,
) -> dict[str, Any]:
    """The columns of one delivery owed: for :func:`enqueue` or :func:`insert_rows`."""
    return {
        "kind": kind,
        "payload": payload,
        "status": "pending",
        "ordering_key": ordering_key,
        "ref_type": ref[0] if ref else None,
        "ref_id": ref[1] if ref else None,
        "attempts": 0,
        "next_attempt_at": utcnow() + timedelta(seconds=delay_s),
    }


def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    ordering_key: str | None = None,
    ref: tuple[str, int] | None = None,
    delay_s: float = 0,
) -> OutboxItem:
    """Add a delivery to the caller's transaction; it exists only if that commits."""
    item = OutboxItem(**outbox_row(kind, payload, ordering_key=ordering_key, ref=ref, delay_s=delay_s))
    session.add(item)
    return item


async def insert_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add deliveries (:func:`outbox_row`) to the caller's transaction with one INSERT.

    For the visitor's hot path: a chat line's relays written as ORM objects
    cost a unit-of-work flush per batch, more than the statement itself, and
    on SQLite the web process holds the write lock meanwhile.
    """
    if not rows:
        return
    if session.get_bind().dialect.name == "sqlite":
        await insert_many(session, OutboxItem.__table__, rows)  # inline, on the transaction's connection
    else:  # Core's executemany: one multi-row INSERT whose ids follow the rows' order
        await session.execute(insert(OutboxItem.__table__), list(rows))


def next_delay(attempts: int, rng: random.Random | None = None) -> float | None:
    """Seconds until the next try after ``attempts`` failures; None when it is time to give up."""
    if attempts > len(RETRY_DELAYS_S):
        return None
    base = RETRY_DELAYS_S[attempts - 1]
    return base * (rng or random).uniform(0.9, 1.1)  # jitter so a burst of failures spreads out


# An earlier row of the same ordering key still owed blocks a row. The statuses are
# written into the SQL, not bound: only then can SQLite (and PostgreSQL's generic plans)
# prove the probe may use the partial index of open rows, ix_outbox_open_ordering. With
# bound values SQLite walked each key's whole history, done rows included, for every due
# row: 4 ms per claim with 20,000 rows in the table, 0.3 ms with the index.
_OUTBOX: Table = OutboxItem.__table__  # type: ignore[assignment]
_EARLIER = _OUTBOX.alias("earlier")
_BLOCKED = exists().where(
    _EARLIER.c.ordering_key == _OUTBOX.c.ordering_key,
    _EARLIER.c.id < _OUTBOX.c.id,
    _EARLIER.c.status.in_([literal_column("'pending'"), literal_column("'delivering'")]),
)


_PENDING, _DELIVERING = literal_column("'pending'"), literal_column("'delivering'")


def _claimable(condition: Any, order: tuple[Any, ...], dialect: str) -> Any:
    """Ids of up to ``limit`` rows meeting ``condition``, unblocked, of the asked kinds, in ``order``."""
    t = _OUTBOX
    due = (
        select(t.c.id)
        .where(condition, among(t.c.kind, "kinds", dialect), or_(t.c.ordering_key.is_(None), ~_BLOCKED))
        .order_by(*order)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True, of=t)
    return due.subquery()


@lru_cache(maxsize=None)
def _claim_statement(dialect: str) -> Any:
    """The claim, built once per dialect: building it cost SQLAlchemy as much as running it.

    Core, on the table: the claimed rows become objects of their own
    (``detached``), not through the ORM's bulk-update path and identity map,
    which cost a worker more CPU than the statement (11.7 % of its CPU under
    the relay benchmark).

    Two branches, each on its own partial index (ix_outbox_pending_due,
    ix_outbox_lease), read in the index's order: leases run out first (rows
    a dead worker held, owed longest), then due rows. With both statuses in
    one condition PostgreSQL read the index as a bitmap, which visits every
    entry left by the rows' earlier versions since the last VACUUM: 5,800 of
    them for 9 rows half a minute into the relay benchmark, 2-4 ms a claim.
    An index read in order marks such entries dead, so the next claim skips
    them. The statuses are written into the SQL, not bound, so a plan may use
    the partial indexes (see ``_EARLIER``).
    """
    now, t = bindparam("now"), _OUTBOX
    expired = _claimable(and_(t.c.status == _DELIVERING, t.c.locked_until <= now), (t.c.locked_until, t.c.id), dialect)
    due = _claimable(and_(t.c.status == _PENDING, t.c.next_attempt_at <= now), (t.c.next_attempt_at, t.c.id), dialect)
    both = select(expired.c.id).union_all(select(due.c.id)).subquery()
    return (
        update(t)
        .where(t.c.id.in_(select(both.c.id).limit(bindparam("limit")).scalar_subquery()))
        .values(status="delivering", locked_until=bindparam("until"), claimed_by=bindparam("holder"))
        .returning(*t.c)
    )


async def claim_due(
    session: AsyncSession,
    *,
    kinds: list[str],
    limit: int,
    now: datetime | None = None,
    holder: str | None = None,
    lease: timedelta = LEASE,
) -> list[OutboxItem]:
    """Lease up to ``limit`` due rows to ``holder``, oldest due first, in one statement.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers claim side by
    side without waiting or double-claiming. SQLite has one writer at a time
    (our writes begin IMMEDIATE), which gives the same guarantee. One
    ``UPDATE ... RETURNING`` rather than loading the rows and flushing their
    changes: on SQLite the claim holds the write lock a visitor's ack may be
    waiting for. Rows sharing an ``ordering_key`` are claimed one at a time,
    in order: a row waits while an earlier one of its key is still owed.
    """
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    params = {"now": now, "kinds": list(kinds), "limit": limit, "until": now + lease, "holder": holder}
    rows = (await session.execute(_claim_statement(dialect), params)).all()
    items: list[OutboxItem] = [detached(OutboxItem, row) for row in rows]
    items.sort(key=lambda item: (item.next_attempt_at, item.id))  # RETURNING keeps no order
    return items


@lru_cache(maxsize=None)
def _held_statement(dialect: str) -> Any:
    """Which of the rows ``ids`` ``holder`` still holds; on PostgreSQL locked until the
    transaction ends, in the order of their ids.

    Every statement that waits for outbox row locks takes them through this, in one
    order: the records of finished deliveries, the lease renewals and the releases
    of one worker run in transactions side by side, on overlapping rows. Each taking
    its rows in the order its scan met them, two of them deadlocked now and then
    (PostgreSQL then fails one: a renewal or a record lost, retried later). The
    claim takes no part: it skips locked rows rather than waiting for them.
    """
    t = _OUTBOX
    held = select(t.c.id).where(among(t.c.id, "ids", dialect), t.c.status == "delivering", t.c.claimed_by == bindparam("holder"))
    return held.order_by(t.c.id).with_for_update() if dialect == "postgresql" else held


def _update_held(dialect: str) -> Any:
    """An UPDATE of the rows :func:`_held_statement` finds (and, on PostgreSQL, locks in order)."""
    return update(_OUTBOX).where(_OUTBOX.c.id.in_(_held_statement(dialect).scalar_subquery()))


@lru_cache(maxsize=None)
def _renew_statement(dialect: str) -> Any:
    return _update_held(dialect).values(locked_until=bindparam("until")).returning(_OUTBOX.c.id)


@lru_cache(maxsize=None)
def _release_statement(dialect: str) -> Any:
    return _update_held(dialect).values(status="pending", locked_until=None, claimed_by=None, next_attempt_at=bindparam("now"))


async def renew(
    session: AsyncSession, ids: Sequence[int], holder: str, *, now: datetime | None = None, lease: timedelta = CLAIM_LEASE
) -> set[int]:
    """Extend ``holder``'s lease on the rows ``ids``; return the ids it still holds."""
    if not ids:
        return set()
    statement = _renew_statement(session.get_bind().dialect.name)
    result = await session.execute(statement, {"ids": list(ids), "holder": holder, "until": (now or utcnow()) + lease})
    return {int(i) for i in result.scalars()}


async def release(session: AsyncSession, ids: Sequence[int], holder: str, *, now: datetime | None = None) -> int:
    """Hand rows claimed but never started back (a worker stopping cleanly): due again at once."""
    if not ids:
        return 0
    statement = _release_statement(session.get_bind().dialect.name)
    result = await session.execute(statement, {"ids": list(ids), "holder": holder, "now": now or utcnow()})
    return int(result.rowcount or 0)


def _next_state(attempts: int, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The row's columns after its ``attempts``-th attempt ended with ``outcome``."""
    state: dict[str, Any] = {"attempts": attempts, "locked_until": None, "claimed_by": None}
    if outcome.ok:
        return {**state, "status": "done", "done_at": now, "last_error": None, "result": outcome.result}
    state["last_error"] = (outcome.detail or "failed")[:2000]
    if outcome.retry_after is not None and not outcome.permanent and attempts < MAX_THROTTLED_ATTEMPTS:
        # Throttled, not broken: wait as told without using up the retry schedule.
        return {**state, "status": "pending", "next_attempt_at": now + timedelta(seconds=outcome.retry_after)}
    delay = None if outcome.permanent else next_delay(attempts)
    if delay is None:
        return {**state, "status": "dead"}
    return {**state, "status": "pending", "next_attempt_at": now + timedelta(seconds=delay)}


def _attempt_row(item_id: int, number: int, outcome: Outcome, started_at: datetime, now: datetime) -> dict[str, Any]:
    return {
        "outbox_id": item_id,
        "number": number,
        "started_at": started_at,
        "finished_at": now,
        "ok": outcome.ok,
        "status_code": outcome.status_code,
        "detail": (outcome.detail or "")[:2000] or None,
    }


async def record(
    session: AsyncSession, item_id: int, outcome: Outcome, *, started_at: datetime, now: datetime | None = None
) -> OutboxItem:
    """Log the attempt and move the row on: done, retry later, or dead (unfenced: the CLI's test-send)."""
    now = now or utcnow()
    item = await session.get(OutboxItem, item_id, with_for_update=True)
    assert item is not None
    state = _next_state(item.attempts + 1, outcome, now)
    session.add(DeliveryAttempt(**_attempt_row(item.id, state["attempts"], outcome, started_at, now)))
    for key, value in state.items():
        setattr(item, key, value)
    if outcome.effects is not None:
        await outcome.effects(session)
    return item


@dataclass
class Finished:
    """One attempt a worker ran, to be recorded by :func:`record_many`."""

    item: OutboxItem  # as claimed: ``attempts`` is the count before this attempt
    outcome: Outcome
    started_at: datetime
    finished_at: datetime


async def record_many(
    session: AsyncSession, done: Sequence[Finished], holder: str, *, effects: bool = True
) -> set[int]:
    """Record several attempts in the caller's transaction, fenced on ``holder``.

    A few statements whatever the number: one locking read of the rows still
    held, one UPDATE per shape of change and one INSERT (core/bulk_sql.py),
    plus what the outcomes' ``effects`` add. Returns the ids recorded; a row
    another worker took over is left to it (its post is at-least-once, the new holder records the state),
    but the ``effects`` still run: the post did land where they say.
    """
    if not done:
        return set()
    ids = [f.item.id for f in done]
    held_q = _held_statement(session.get_bind().dialect.name)
    held = {int(i) for i in (await session.execute(held_q, {"ids": ids, "holder": holder})).scalars()}
    # One statement per shape of change (done rows all look alike; failures differ).
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    attempts: list[dict[str, Any]] = []
    for f in done:
        if f.item.id not in held:
            continue
        number = f.item.attempts + 1
        state = _next_state(number, f.outcome, f.finished_at)
        by_shape.setdefault(tuple(sorted(state)), []).append({"id": f.item.id, **state})
        attempts.append(_attempt_row(f.item.id, number, f.outcome, f.started_at, f.finished_at))
    for rows in by_shape.values():
        await update_many(session, _OUTBOX, "id", rows)
    await insert_many(session, DeliveryAttempt.__table__, attempts)
    if effects:
        await _run_effects(session, [f.outcome.effects for f in done if f.outcome.effects is not None])
    await session.flush()
    return held


async def _run_effects(session: AsyncSession, effects: list[Callable[[AsyncSession], Awaitable[None]]]) -> None:
    """The outcomes' effects: :class:`NewRows` one INSERT per table and shape, the rest one by one after."""
    batched: dict[tuple[str, tuple[str, ...]], tuple[Table, list[dict[str, Any]]]] = {}
    for effect in effects:
        if isinstance(effect, NewRows):
            for table, row in effect.rows:
                _, rows = batched.setdefault((table.name, tuple(sorted(row))), (table, []))
                rows.append(row)
    for table, rows in batched.values():
        await insert_new(session, table, rows)
    for effect in effects:
        if not isinstance(effect, NewRows):
            await effect(session)


async def retry_dead(session: AsyncSession, item_id: int) -> OutboxItem | None:
    """Give a dead delivery a fresh try now (from the API or CLI)."""
    item = await session.get(OutboxItem, item_id)
    if item is None or item.status != "dead":
        return item
    item.status, item.next_attempt_at, item.attempts, item.claimed_by = "pending", utcnow(), 0, None
    return item


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status))
    return {status: int(count) for status, count in rows}


def outbox_item_to_json(item: OutboxItem, attempts: list[DeliveryAttempt] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": iso(item.next_attempt_at) if item.status == "pending" else None,
        "last_error": item.last_error,
        "created_at": iso(item.created_at),
        "done_at": iso(item.done_at),
    }
    if attempts is not None:
        body["attempt_log"] = [
            {
                "number": a.number,
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
                "ok": a.ok,
                "status_code": a.status_code,
                "detail": a.detail,
            }
            for a in attempts
        ]
    return body

