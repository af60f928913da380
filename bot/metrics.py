"""``GET /metrics``: Prometheus text for this process.

Web processes (``deskbell run``/``web``) serve it on their own port; a
separate ``deskbell worker`` serves it, with ``/healthz``, on
``--metrics-port`` / ``DESKBELL_WORKER_METRICS_PORT`` (see :func:`start_worker_metrics`).
"""

from __future__ import annotations

from datetime import timezone

from aiohttp import web
from sqlalchemy import func, select

from adapters.http import SERVICES
from core.clock import utcnow
from core.leader import WORKER_STALE_AFTER
from core.metrics import Labels, Registry, labels
from core.models import OutboxItem, WorkerHeartbeat
from core.outbox import counts_by_status
from core.services import Services


def _outbox_gauges(svc: Services) -> None:
    async def outbox_rows() -> dict[Labels, float]:
        async with svc.db.read() as session:
            counts = await counts_by_status(session)
        return {labels(status=s): float(counts.get(s, 0)) for s in ("pending", "delivering", "done", "dead")}

    async def oldest_pending() -> dict[Labels, float]:
        async with svc.db.read() as session:
            oldest = (
                await session.execute(select(func.min(OutboxItem.created_at)).where(OutboxItem.status == "pending"))
            ).scalar_one_or_none()
        if oldest is None:
            return {labels(): 0.0}
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=timezone.utc)
        return {labels(): max(0.0, (utcnow() - oldest).total_seconds())}

    async def workers_alive() -> dict[Labels, float]:
        async with svc.db.read() as session:
            count = (
                await session.execute(
                    select(func.count()).where(WorkerHeartbeat.last_seen_at >= utcnow() - WORKER_STALE_AFTER)
                )
            ).scalar_one()
        return {labels(): float(count)}

    metrics = svc.metrics
    metrics.gauge("deskbell_outbox_rows", "Outbox rows by status (dead rows need attention).", outbox_rows)
    metrics.gauge("deskbell_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox row.", oldest_pending)
    metrics.gauge("deskbell_workers_alive", "Workers whose heartbeat is less than a minute old.", workers_alive)


def _handler(metrics: Registry):  # type: ignore[no-untyped-def]
    async def handle(request: web.Request) -> web.Response:
        body = await metrics.render()
        return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    return handle


def setup_metrics(app: web.Application) -> None:
    from adapters.widget.socket import HUB

    svc = app[SERVICES]

    def sockets() -> dict[Labels, float]:
        return {labels(): float(app[HUB].count)}

    svc.metrics.gauge("deskbell_widget_sockets_open", "Visitor WebSockets open in this process.", sockets)
    _outbox_gauges(svc)
    app.router.add_get("/metrics", _handler(svc.metrics))


def worker_metrics_app(svc: Services) -> web.Application:
    """The worker's own small HTTP server: ``/metrics`` and ``/healthz``."""
    app = web.Application()
    _outbox_gauges(svc)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/metrics", _handler(svc.metrics))
    app.router.add_get("/healthz", healthz)
    return app


async def start_worker_metrics(svc: Services, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(worker_metrics_app(svc), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
