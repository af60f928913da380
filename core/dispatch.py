"""Delivers outbox rows: claims due ones, runs their handlers, records outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from core import events as ev
from core.clock import utcnow
from core.db import Database
from core.events import EventBus
from core.metrics import Registry
from core.outbox import OutboxItem, Outcome, claim_due, record

log = logging.getLogger(__name__)

Handler = Callable[[OutboxItem], Awaitable[Outcome]]
HANDLER_TIMEOUT_S = 60.0


class Dispatcher:
    def __init__(
        self,
        db: Database,
        bus: EventBus | None = None,
        *,
        batch: int = 50,
        concurrency: int = 8,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
        metrics: Registry | None = None,
    ) -> None:
        self.db = db
        registry = metrics or Registry()
        self._outcomes = registry.counter("deskbell_deliveries_total", "Delivery attempts by kind and outcome.")
        self._latency = registry.histogram(
            "deskbell_delivery_latency_seconds",
            "From the change that owed a delivery to its success, by kind.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200),
        )
        self._platform_errors = registry.counter(
            "deskbell_platform_errors_total", "Failed deliveries by destination platform (slack, teams, email...)."
        )
        self.handlers: dict[str, Handler] = {}
        self.batch = batch
        self.poll_s = poll_s
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        if bus is not None:
            bus.subscribe(ev.OUTBOX_ENQUEUED, self._on_enqueued)

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    async def _on_enqueued(self, _name: str, _data: dict[str, Any]) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver them; return how many were tried."""
        if not self.handlers:
            return 0
        async with self.db.write() as session:
            items = await claim_due(session, kinds=list(self.handlers), limit=self.batch, now=self.clock())
            claimed = [(item.id, item) for item in items]
        await asyncio.gather(*(self._deliver(item) for _, item in claimed))
        return len(claimed)

    async def _deliver(self, item: OutboxItem) -> None:
        async with self._slots:
            started = self.clock()
            try:
                outcome = await asyncio.wait_for(self.handlers[item.kind](item), timeout=HANDLER_TIMEOUT_S)
            except asyncio.TimeoutError:
                outcome = Outcome(False, detail=f"timed out after {HANDLER_TIMEOUT_S:.0f} s")
            except Exception as exc:  # a handler bug must not stop other deliveries
                log.exception("delivery %s (%s) failed", item.id, item.kind)
                outcome = Outcome(False, detail=f"{type(exc).__name__}: {exc}")
            async with self.db.write() as session:
                await record(session, item.id, outcome, started_at=started, now=self.clock())
            self._count(item, outcome)

    def _count(self, item: OutboxItem, outcome: Outcome) -> None:
        self._outcomes.inc(kind=item.kind, outcome="ok" if outcome.ok else "failed")
        if outcome.ok:
            self._latency.observe(max(0.0, (self.clock() - item.created_at).total_seconds()), kind=item.kind)
        else:
            self._platform_errors.inc(platform=item.kind.split(".", 1)[0])

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop``; wake on new rows in this process, else poll."""
        while not stop.is_set():
            self._wake.clear()
            try:
                tried = await self.run_once()
            except Exception:
                log.exception("outbox dispatch failed; retrying")
                tried = 0
            if tried >= self.batch:
                continue  # more may be due right now
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
