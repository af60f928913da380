"""The outbox: every outbound delivery is a row written in the transaction
that caused it, so a crash can delay a delivery but never lose it.

A dispatcher (in the worker) claims due rows, hands each to the handler
registered for its ``kind`` (email, webhook, a Slack post...), records every
attempt, and reschedules failures with backoff until they are delivered or
marked dead. Rows sharing an ``ordering_key`` (one chat thread, say) are
delivered one at a time in id order, so a reply never overtakes the message
that opens its thread.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.clock import iso, utcnow
from core.models import DeliveryAttempt, OutboxItem

# About 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: the Standard Webhooks schedule.
RETRY_DELAYS_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
LEASE = timedelta(minutes=2)  # a claimed row not finished by then is claimed again
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
    item = OutboxItem(
        kind=kind,
        payload=payload,
        status="pending",
        ordering_key=ordering_key,
        ref_type=ref[0] if ref else None,
        ref_id=ref[1] if ref else None,
        attempts=0,
        next_attempt_at=utcnow() + timedelta(seconds=delay_s),
    )
    session.add(item)
    return item


def next_delay(attempts: int, rng: random.Random | None = None) -> float | None:
    """Seconds until the next try after ``attempts`` failures; None when it is time to give up."""
    if attempts > len(RETRY_DELAYS_S):
        return None
    base = RETRY_DELAYS_S[attempts - 1]
    return base * (rng or random).uniform(0.9, 1.1)  # jitter so a burst of failures spreads out


def _claimable(now: datetime) -> Any:
    return or_(
        and_(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now),
        and_(OutboxItem.status == "delivering", OutboxItem.locked_until <= now),
    )


async def claim_due(
    session: AsyncSession, *, kinds: list[str], limit: int, now: datetime | None = None
) -> list[OutboxItem]:
    """Lease up to ``limit`` due rows to this worker.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers claim side by
    side without waiting or double-claiming. SQLite has one writer at a time
    (our writes begin IMMEDIATE), which gives the same guarantee.
    """
    now = now or utcnow()
    earlier = aliased(OutboxItem)
    blocked = exists().where(
        earlier.ordering_key == OutboxItem.ordering_key,
        earlier.id < OutboxItem.id,
        earlier.status.in_(("pending", "delivering")),
    )
    query = (
        select(OutboxItem)
        .where(_claimable(now), OutboxItem.kind.in_(kinds), or_(OutboxItem.ordering_key.is_(None), ~blocked))
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=OutboxItem)
    items = list((await session.execute(query)).scalars())
    for item in items:
        item.status = "delivering"
        item.locked_until = now + LEASE
    await session.flush()
    return items


async def record(
    session: AsyncSession, item_id: int, outcome: Outcome, *, started_at: datetime, now: datetime | None = None
) -> OutboxItem:
    """Log the attempt and move the row on: done, retry later, or dead."""
    now = now or utcnow()
    item = await session.get(OutboxItem, item_id, with_for_update=True)
    assert item is not None
    item.attempts += 1
    session.add(
        DeliveryAttempt(
            outbox_id=item.id,
            number=item.attempts,
            started_at=started_at,
            finished_at=now,
            ok=outcome.ok,
            status_code=outcome.status_code,
            detail=(outcome.detail or "")[:2000] or None,
        )
    )
    item.locked_until = None
    if outcome.ok:
        item.status, item.done_at, item.last_error, item.result = "done", now, None, outcome.result
        return item
    item.last_error = (outcome.detail or "failed")[:2000]
    if outcome.retry_after is not None and not outcome.permanent and item.attempts < MAX_THROTTLED_ATTEMPTS:
        # Throttled, not broken: wait as told without using up the retry schedule.
        item.status, item.next_attempt_at = "pending", now + timedelta(seconds=outcome.retry_after)
        return item
    delay = None if outcome.permanent else next_delay(item.attempts)
    if delay is None:
        item.status = "dead"
    else:
        item.status, item.next_attempt_at = "pending", now + timedelta(seconds=delay)
    return item


async def retry_dead(session: AsyncSession, item_id: int) -> OutboxItem | None:
    """Give a dead delivery a fresh try now (from the API or CLI)."""
    item = await session.get(OutboxItem, item_id)
    if item is None or item.status != "dead":
        return item
    item.status, item.next_attempt_at, item.attempts = "pending", utcnow(), 0
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

