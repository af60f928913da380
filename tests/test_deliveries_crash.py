"""Kill the worker mid-delivery: nothing is lost, nothing is doubled for a
receiver that deduplicates on ``webhook-id``, and delivery resumes within
seconds, not when a long lease runs out.

The guarantee is at least once. A worker killed after a receiver accepted a
webhook but before the attempt was recorded sends it again once the row's
lease runs out: same ``webhook-id``, same body. Standard Webhooks receivers
drop the repeat by id; that is what "not doubled" means. Workers renew the
short lease of the rows they hold every 1.5 s, so a killed worker's rows (and
every later row of the same ordering key) are taken over within about
:data:`core.outbox.CLAIM_LEASE` (6 s) plus a poll; a slow but alive worker keeps its rows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import time
from datetime import timedelta

from sqlalchemy import select

from bot.migrate import upgrade
from core.db import Database
from core.dispatch import CONCURRENCY, Dispatcher
from core.deliveries import plan_offline_message
from core.models import OutboxItem
from core.outbox import CLAIM_LEASE, Outcome, enqueue
from core.offline import store_offline_message
from core.webhooks import create_endpoint
from core.widgets import create_widget
from tests.fakes.webhook_receiver import WebhookReceiver

DESKBELL = str(Path(sys.executable).parent / "deskbell")
MESSAGES = 80
RESUME_WITHIN_S = CLAIM_LEASE.total_seconds() + 4  # the lease, a poll, and a worker start on a busy machine


async def _start_worker(db_url: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "SMTP_", "PUSHOVER_"))}
    return await asyncio.create_subprocess_exec(
        DESKBELL, "worker", env={**env, "DESKBELL_DATABASE_URL": db_url, "DESKBELL_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_killing_the_worker_mid_delivery_loses_nothing_and_doubles_nothing(empty_db_url):
    await asyncio.to_thread(upgrade, empty_db_url)
    receiver = WebhookReceiver(hold_s=0.4)  # slow enough that deliveries are in flight when the worker dies
    await receiver.start()
    db = Database(empty_db_url)
    worker: asyncio.subprocess.Process | None = None
    try:
        async with db.write() as session:
            widget = await create_widget(session, {"name": "Shop"})
            endpoint = await create_endpoint(session, widget, {"url": receiver.url})
            receiver.secret = endpoint.secret
            for n in range(MESSAGES):
                row = await store_offline_message(
                    session, widget, {"email": f"v{n}@example.com", "message": f"Question {n}"}
                )
                await plan_offline_message(session, widget, row)

        async def rows() -> list[OutboxItem]:
            async with db.read() as session:
                return list((await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars())

        expected = {r.payload["msg_id"] for r in await rows()}
        assert len(expected) == MESSAGES

        worker = await _start_worker(empty_db_url)

        async def some_in_flight() -> bool:
            return receiver.started >= 6

        await _until(some_in_flight, 30, "the first worker to start delivering")
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        assert worker.returncode == -signal.SIGKILL
        killed_with = {r.status for r in await rows()}
        assert "delivering" in killed_with, killed_with  # the kill really hit mid-delivery

        hits_at_kill = len(receiver.hits)
        killed_at = time.monotonic()
        worker = await _start_worker(empty_db_url)  # restarted at once, as a supervisor would

        async def resumed() -> bool:
            return len(receiver.hits) > hits_at_kill

        await _until(resumed, 60, "the second worker to take the dead worker's rows over")
        resume_s = time.monotonic() - killed_at

        async def all_done() -> bool:
            return all(r.status == "done" for r in await rows())

        await _until(all_done, 60, "the second worker to deliver everything")
        all_done_s = time.monotonic() - killed_at
        print(f"\nworker SIGKILL: deliveries resumed after {resume_s:.1f} s, all {MESSAGES} done after {all_done_s:.1f} s")
        assert resume_s <= RESUME_WITHIN_S, resume_s
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), timeout=15) == 0

        kept = receiver.distinct_accepted()
        assert set(kept) == expected  # every message arrived
        assert receiver.rejected == []  # every attempt verified with the reference library
        for msg_id in kept:  # a repeat is the same message, never a different one under the same id
            bodies = {str(h.payload) for h in receiver.accepted if h.msg_id == msg_id}
            assert len(bodies) == 1
        repeats = len(receiver.accepted) - len(kept)
        assert 1 <= repeats <= CONCURRENCY  # what the dead worker had in flight (at most its concurrency) came twice
        delivered_ids = sorted(h.payload["data"]["offline_message"]["id"] for h in kept.values())
        assert delivered_ids == list(range(1, MESSAGES + 1))
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        await receiver.close()
        await db.dispose()


async def test_a_slow_handler_that_is_alive_keeps_its_row_and_a_dead_ones_row_is_taken_over(db: Database):
    """Leases of 1 s renewed every 0.2 s: a 2.5 s delivery is not posted twice by a second
    worker polling all along; a worker that stops renewing (killed) loses its row within ~1 s."""
    calls: list[str] = []

    async def slow(item: OutboxItem) -> Outcome:
        calls.append("slow")
        await asyncio.sleep(2.5)
        return Outcome(True)

    async def quick(item: OutboxItem) -> Outcome:
        calls.append("other")
        return Outcome(True)

    lease, renew = timedelta(seconds=1), timedelta(seconds=0.2)
    other_db = Database(db.url)
    alive = Dispatcher(db, lease=lease, renew_every=renew, poll_s=0.1)
    alive.register("test", slow)
    other = Dispatcher(other_db, lease=lease, renew_every=renew, poll_s=0.1)
    other.register("test", quick)
    async with db.write() as session:
        enqueue(session, "test", {"n": 1})
    stop_alive, stop_other = asyncio.Event(), asyncio.Event()
    task_alive = asyncio.create_task(alive.run(stop_alive))
    try:
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.05)
        task_other = asyncio.create_task(other.run(stop_other))
        for _ in range(60):
            async with db.read() as session:
                [row] = (await session.execute(select(OutboxItem))).scalars()
            if row.status == "done":
                break
            await asyncio.sleep(0.1)
        assert row.status == "done" and row.attempts == 1
        assert calls == ["slow"]  # never taken over while its worker renewed the lease

        stop_alive.set()
        await task_alive
        # Now a worker that claims and dies: no renewals, so the other takes the row within the lease.
        async with db.write() as session:
            enqueue(session, "test", {"n": 2})
        dead = Dispatcher(db, lease=lease)
        dead.register("test", slow)
        async with db.write() as session:
            from core.outbox import claim_due

            [claimed] = await claim_due(session, kinds=["test"], limit=1, holder=dead.holder, lease=lease)
        started = time.monotonic()
        for _ in range(100):
            async with db.read() as session:
                row = await session.get(OutboxItem, claimed.id)
            if row is not None and row.status == "done":
                break
            await asyncio.sleep(0.05)
        assert row is not None and row.status == "done" and calls == ["slow", "other"]
        assert time.monotonic() - started <= 1.0 + 1.5
    finally:
        stop_alive.set()
        stop_other.set()
        await asyncio.gather(task_alive, *(t for t in [locals().get("task_other")] if t is not None))
        await other_db.dispose()
