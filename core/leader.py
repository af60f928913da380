"""Leader election over the database, so one worker runs the jobs that must not run twice.

A lease row names its holder and an expiry. The leader renews it well before
it expires; if the leader dies, the lease runs out and a standby takes over
at its next attempt: within ``ttl + renew`` seconds (20 + 5 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db import Database
from core.models import Lease

log = logging.getLogger(__name__)

Job = Callable[[asyncio.Event], Awaitable[None]]


async def try_acquire(session: AsyncSession, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease ``name`` for ``holder``; False while someone else holds it."""
    lease = await session.get(Lease, name, with_for_update=True)
    if lease is None:
        try:
            async with session.begin_nested():
                session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
        except IntegrityError:
            return False  # another candidate created it first
        return True
    if lease.holder != holder and lease.expires_at > now:
        return False
    lease.holder, lease.expires_at = holder, now + ttl
    return True


async def release(session: AsyncSession, name: str, holder: str) -> None:
    lease = await session.get(Lease, name, with_for_update=True)
    if lease is not None and lease.holder == holder:
        lease.expires_at = utcnow()


class LeaderElection:
    """Runs ``jobs`` only while this process holds the lease ``name``."""

    def __init__(self, db: Database, name: str, *, ttl_s: float = 20.0, renew_s: float = 5.0) -> None:
        self.db = db
        self.name = name
        self.holder = secrets.token_hex(8)
        self.ttl = timedelta(seconds=ttl_s)
        self.renew_s = renew_s
        self.is_leader = False

    async def _attempt(self) -> bool:
        try:
            async with self.db.write() as session:
                return await try_acquire(session, self.name, self.holder, self.ttl, utcnow())
        except Exception:
            log.exception("leader lease %s: cannot reach the database", self.name)
            return False  # not sure we still hold it: stop leading rather than risk two leaders

    async def run(self, jobs: list[Job], stop: asyncio.Event) -> None:
        job_stop: asyncio.Event | None = None
        running: list[asyncio.Task[None]] = []
        try:
            while not stop.is_set():
                leader = await self._attempt()
                if leader and not self.is_leader:
                    log.info("leading %s (holder %s)", self.name, self.holder)
                    job_stop = asyncio.Event()
                    running = [asyncio.create_task(job(job_stop)) for job in jobs]
                elif not leader and self.is_leader:
                    log.warning("lost the %s lease; stopping its jobs", self.name)
                    await _stop(job_stop, running)
                    running = []
                self.is_leader = leader
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.renew_s)
        finally:
            await _stop(job_stop, running)
            if self.is_leader:
                with contextlib.suppress(Exception):
                    async with self.db.write() as session:
                        await release(session, self.name, self.holder)  # a standby takes over at once
            self.is_leader = False


async def _stop(job_stop: asyncio.Event | None, running: list[asyncio.Task[None]]) -> None:
    if job_stop is not None:
        job_stop.set()
    for task in running:
        try:
            await asyncio.wait_for(task, timeout=5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:
            log.exception("a leader job failed while stopping")
