"""Kill the worker mid-delivery: nothing is lost, and nothing is doubled for a
receiver that deduplicates on ``webhook-id``.

The guarantee is at least once. A worker killed after a receiver accepted a
webhook but before the attempt was recorded sends it again once the row's
lease (2 minutes) runs out: same ``webhook-id``, same body. Standard
Webhooks receivers drop the repeat by id; that is what "not doubled" means.
The test shortens the lease wait by expiring the leases in the database
rather than sleeping two minutes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import select, update

from bot.migrate import upgrade
from core.clock import utcnow
from core.db import Database
from core.deliveries import plan_offline_message
from core.models import OutboxItem
from core.offline import store_offline_message
from core.webhooks import create_endpoint
from core.widgets import create_widget
from tests.fakes.webhook_receiver import WebhookReceiver

DESKBELL = str(Path(sys.executable).parent / "deskbell")
MESSAGES = 24


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

        async with db.write() as session:  # fast-forward the 2-minute lease of the dead worker's rows
            await session.execute(
                update(OutboxItem).where(OutboxItem.status == "delivering").values(locked_until=utcnow())
            )
        worker = await _start_worker(empty_db_url)

        async def all_done() -> bool:
            return all(r.status == "done" for r in await rows())

        await _until(all_done, 60, "the second worker to deliver everything")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), timeout=15) == 0

        kept = receiver.distinct_accepted()
        assert set(kept) == expected  # every message arrived
        assert receiver.rejected == []  # every attempt verified with the reference library
        for msg_id in kept:  # a repeat is the same message, never a different one under the same id
            bodies = {str(h.payload) for h in receiver.accepted if h.msg_id == msg_id}
            assert len(bodies) == 1
        repeats = len(receiver.accepted) - len(kept)
        assert 1 <= repeats <= 8  # what the dead worker had in flight (at most its concurrency) came twice
        delivered_ids = sorted(h.payload["data"]["offline_message"]["id"] for h in kept.values())
        assert delivered_ids == list(range(1, MESSAGES + 1))
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        await receiver.close()
        await db.dispose()
