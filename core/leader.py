"""Liveness over the database: leader election, so one worker runs the jobs that
must not run twice, and worker heartbeats, so web processes can tell (in
``/readyz``) whether any worker is delivering.

A lease row names its holder and an expiry. The leader renews it well before
it expires; if the leader dies, the lease runs out and a standby takes over
at its next attempt: within ``ttl + renew`` seconds (20 + 5 by default).

A heartbeat row per running worker (``deskbell worker``, or the worker inside
``deskbell run``) carries ``last_seen_at``, written every
:data:`HEARTBEAT_EVERY_S`; a worker stopping cleanly removes its row, a killed
one leaves it to go stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db import Database
from core.models import Lease, WorkerHeartbeat
from core.wakeups import wait_for_wake

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
                await wait_for_wake(stop, self.renew_s)
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


# -- worker heartbeats --------------------------------------------------------

HEARTBEAT_EVERY_S = 10.0
WORKER_STALE_AFTER = timedelta(seconds=60)  # no heartbeat for this long: the worker is reported down
FORGET_AFTER = timedelta(days=1)  # rows of workers gone this long are deleted


async def beat(session: AsyncSession, beat_row: WorkerHeartbeat, now: datetime) -> None:
    """Write (or create) this worker's heartbeat; drop rows of workers gone for a day."""
    row = await session.get(WorkerHeartbeat, beat_row.id)
    if row is None:
        session.add(
            WorkerHeartbeat(
                id=beat_row.id, host=beat_row.host, pid=beat_row.pid, mode=beat_row.mode,
                started_at=beat_row.started_at, last_seen_at=now,
            )
        )
    else:
        row.last_seen_at = now
    await session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < now - FORGET_AFTER))


async def worker_heartbeats(session: AsyncSession) -> list[WorkerHeartbeat]:
    """Every worker known, most recently seen first."""
    query = select(WorkerHeartbeat).order_by(WorkerHeartbeat.last_seen_at.desc())
    return list((await session.execute(query)).scalars())


def describe_workers(
    beats: list[WorkerHeartbeat], now: datetime, stale_after: timedelta = WORKER_STALE_AFTER
) -> tuple[bool, str]:
    """(a worker is alive, what to tell an operator)."""
    alive = [b for b in beats if now - b.last_seen_at <= stale_after]
    if alive:
        names = ", ".join(f"{b.mode} pid {b.pid} on {b.host}" for b in alive[:5])
        return True, f"{len(alive)} worker(s) alive: {names}"
    if not beats:
        return False, (
            "no worker has ever reported: nothing is delivered to Slack, Teams, email or webhooks; "
            "start `deskbell worker` (or use `deskbell run`)"
        )
    last = beats[0]
    ago = (now - last.last_seen_at).total_seconds()
    return False, (
        f"no worker heartbeat for {ago:.0f} s (last: {last.mode} pid {last.pid} on {last.host}): "
        "deliveries to Slack, Teams, email and webhooks are waiting; is `deskbell worker` running?"
    )


class Heartbeat:
    """Keeps this worker's heartbeat row fresh until ``stop``, then removes it."""

    def __init__(self, db: Database, mode: str, *, every_s: float = HEARTBEAT_EVERY_S) -> None:
        self.db = db
        self.every_s = every_s
        self.row = WorkerHeartbeat(
            id=secrets.token_hex(8), host=socket.gethostname()[:200], pid=os.getpid(), mode=mode, started_at=utcnow()
        )
        self.last_ok: datetime | None = None

    async def beat_once(self) -> None:
        now = utcnow()
        async with self.db.write() as session:
            await beat(session, self.row, now)
        self.last_ok = now

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.beat_once()
                except Exception:
                    log.warning("worker heartbeat: cannot reach the database", exc_info=True)
                await wait_for_wake(stop, self.every_s)
        finally:
            with contextlib.suppress(Exception):
                async with self.db.write() as session:
                    await session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == self.row.id))
