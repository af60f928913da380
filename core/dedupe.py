"""Once-only handling of inbound platform events (Slack retries, Teams redeliveries)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import ProcessedEvent


async def first_time(session: AsyncSession, source: str, event_id: str) -> bool:
    """Mark ``event_id`` as handled in the caller's transaction; False if it already was.

    Because the mark commits together with the event's effects, a crash
    before the commit leaves the event unmarked and the platform's retry
    is handled; a crash after it makes the retry a no-op.
    """
    found = await session.execute(
        select(ProcessedEvent.id).where(ProcessedEvent.source == source, ProcessedEvent.event_id == event_id)
    )
    if found.first() is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(ProcessedEvent(source=source, event_id=event_id[:200]))
    except IntegrityError:
        return False  # a concurrent delivery of the same event got there first
    return True
