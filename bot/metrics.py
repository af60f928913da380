"""``GET /metrics``: Prometheus text for this process."""

from __future__ import annotations

from datetime import timezone

from aiohttp import web
from sqlalchemy import func, select

from adapters.http import SERVICES
from adapters.widget.socket import HUB
from core.clock import utcnow
from core.metrics import Labels, labels
from core.models import OutboxItem
from core.outbox import counts_by_status


def setup_metrics(app: web.Application) -> None:
    svc = app[SERVICES]
    metrics = svc.metrics

    def sockets() -> dict[Labels, float]:
        return {labels(): float(app[HUB].count)}

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

    metrics.gauge("deskbell_widget_sockets_open", "Visitor WebSockets open in this process.", sockets)
    metrics.gauge("deskbell_outbox_rows", "Outbox rows by status (dead rows need attention).", outbox_rows)
    metrics.gauge("deskbell_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox row.", oldest_pending)

    async def handle(request: web.Request) -> web.Response:
        body = await metrics.render()
        return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    app.router.add_get("/metrics", handle)
