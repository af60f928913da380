"""Background work that must not run in every web process: outbox deliveries,
manager digests, agents-away alerts, periodic housekeeping, and the worker's
heartbeat (read by ``/readyz`` in every web process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete

from core.away_alerts import AwayAlertRunner
from core.clock import utcnow
from core.db import Database
from core.digest_runs import DigestRunner
from core.dispatch import Dispatcher
from core.leader import Heartbeat
from core.models import AgentToken
from core.privacy import purge_expired
from core.wakeups import wait_for_wake

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600


async def purge_expired_tokens(db: Database) -> int:
    """Expired console links and sessions are useless; keep the table small."""
    async with db.write() as session:
        result = await session.execute(delete(AgentToken).where(AgentToken.expires_at <= utcnow()))
    return int(result.rowcount or 0)


async def apply_retention(db: Database) -> dict[str, int]:
    """Delete visitor data older than each widget's retention setting."""
    async with db.write() as session:
        return await purge_expired(session)


async def _housekeeping(db: Database, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            removed = await purge_expired_tokens(db)
            if removed:
                log.info("purged %d expired console tokens", removed)
            purged = await apply_retention(db)
            if any(purged.values()):
                log.info("retention removed %(offline_messages)d offline messages, %(conversations)d conversations", purged)
        except Exception:
            log.exception("housekeeping failed; will retry")
        await wait_for_wake(stop, PURGE_EVERY_S)


async def run_minutely(jobs: dict[str, Callable[[], Awaitable[Any]]], stop: asyncio.Event) -> None:
    """Run each job every minute with APScheduler, and once right away.

    The first run at start-up is the catch-up: a digest that fell due while
    no worker ran is sent then. Several workers may run these; each job
    writes its result with a unique key or a compare-and-set, so only one of
    them sends each digest or alert.
    """
    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    for name, job in jobs.items():
        scheduler.add_job(
            job,
            CronTrigger(second=0, timezone=timezone.utc),
            id=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=50,
            next_run_time=datetime.now(timezone.utc),
        )
    scheduler.start()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)


async def run_worker(
    db: Database, dispatcher: Dispatcher, stop: asyncio.Event, heartbeat: Heartbeat | None = None
) -> None:
    """Deliver the outbox, send digests and alerts, beat, and keep house until ``stop`` is set."""
    jobs = {
        "digests": DigestRunner(db, on_enqueued=dispatcher.wake).run_once,
        "agents_away_alerts": AwayAlertRunner(db, on_enqueued=dispatcher.wake).run_once,
    }
    parts = [dispatcher.run(stop), _housekeeping(db, stop), run_minutely(jobs, stop)]
    if heartbeat is not None:
        parts.append(heartbeat.run(stop))
    await asyncio.gather(*parts)
