"""Exactly one worker runs the leader's jobs; a standby takes over when the leader dies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.clock import utcnow
from core.db import Database
from core.leader import LeaderElection, try_acquire


async def test_a_lease_is_held_by_one_holder_until_it_expires(db: Database):
    now = utcnow()
    ttl = timedelta(seconds=20)
    async with db.write() as session:
        assert await try_acquire(session, "jobs", "a", ttl, now)
    async with db.write() as session:
        assert not await try_acquire(session, "jobs", "b", ttl, now + timedelta(seconds=10))
    async with db.write() as session:
        assert await try_acquire(session, "jobs", "a", ttl, now + timedelta(seconds=10))  # renewal
    async with db.write() as session:
        assert await try_acquire(session, "jobs", "b", ttl, now + timedelta(seconds=31))  # a died


async def test_a_standby_takes_over_when_the_leader_dies_and_never_both_run(db: Database):
    running: dict[str, int] = {"a": 0, "b": 0}
    overlap = False

    def job_for(name: str):  # type: ignore[no-untyped-def]
        async def job(stop: asyncio.Event) -> None:
            nonlocal overlap
            running[name] += 1
            overlap = overlap or (running["a"] > 0 and running["b"] > 0)
            try:
                await stop.wait()
            finally:
                running[name] -= 1
        return job

    other_db = Database(db.url)
    a, b = LeaderElection(db, "jobs", ttl_s=1.0, renew_s=0.1), LeaderElection(other_db, "jobs", ttl_s=1.0, renew_s=0.1)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run([job_for("a")], stop_a))
    await asyncio.sleep(0.3)
    task_b = asyncio.create_task(b.run([job_for("b")], stop_b))
    try:
        await asyncio.sleep(0.5)
        assert (running["a"], running["b"]) == (1, 0)
        task_a.cancel()
        await asyncio.gather(task_a, return_exceptions=True)
        # As if it had been SIGKILLed right after renewing: the lease is still its own for 1 s.
        async with db.write() as session:
            assert await try_acquire(session, "jobs", a.holder, timedelta(seconds=1), utcnow())
        running["a"] = 0  # its process is gone, and its job with it
        await asyncio.sleep(0.5)
        assert running["b"] == 0  # the standby waits for the lease to run out
        for _ in range(40):
            if running["b"]:
                break
            await asyncio.sleep(0.1)
        assert running["b"] == 1 and not overlap
    finally:
        stop_b.set()
        await task_b
        await other_db.dispose()
