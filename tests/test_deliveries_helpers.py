"""Shared pieces of the delivery tests: a controllable clock, a dispatcher wired
like the worker's, and small builders.

(Named ``test_deliveries_*`` only so it sits with those tests; it holds no tests.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.settings import Settings
from bot.wiring import register_delivery_handlers
from core.agents import create_agent
from core.clock import utcnow
from core.db import Database
from core.dispatch import Dispatcher
from core.models import Agent, DeliveryAttempt, OutboxItem, Widget
from core.services import Services
from core.widgets import create_widget

VISITOR = {"name": "Rita Jones", "email": "rita@example.com", "message": "Please call me back\nabout order 42", "page_url": "https://shop.example/cart"}


class Clock:
    """The dispatcher's idea of now; starts at the real now so freshly planned rows are due."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def settings_for(services: Services, **env: str) -> Settings:
    """Settings as the worker would read them, with delivery variables from ``env``."""
    base = {"DESKBELL_DATABASE_URL": services.db.url, **env}
    return Settings.from_env(base, dotenv=None)


def dispatcher_for(services: Services, clock: Clock, **env: str) -> Dispatcher:
    dispatcher = Dispatcher(services.db, clock=clock)
    register_delivery_handlers(dispatcher, services, settings_for(services, **env))
    return dispatcher


async def drain(dispatcher: Dispatcher, rounds: int = 5) -> int:
    """Deliver everything due now (rows that unblock others included)."""
    total = 0
    for _ in range(rounds):
        tried = await dispatcher.run_once()
        total += tried
        if not tried:
            break
    return total


async def add_widget(services: Services, name: str = "Shop", **settings: Any) -> Widget:
    async with services.db.write() as session:
        return await create_widget(session, {"name": name, **settings})


async def add_agent(services: Services, email: str, **fields: Any) -> Agent:
    async with services.db.write() as session:
        return await create_agent(session, {"name": email.split("@")[0].title(), "email": email, **fields})


async def outbox(db: Database, kind_prefix: str = "") -> list[OutboxItem]:
    async with db.read() as session:
        rows = (await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars()
        return [r for r in rows if r.kind.startswith(kind_prefix)]


async def attempts(db: Database, outbox_id: int) -> list[DeliveryAttempt]:
    async with db.read() as session:
        query = select(DeliveryAttempt).where(DeliveryAttempt.outbox_id == outbox_id).order_by(DeliveryAttempt.number)
        return list((await session.execute(query)).scalars())


async def submit_offline(client: Any, widget: Widget, **fields: Any) -> int:
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json={**VISITOR, **fields})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def delivery_calls(services: Services, widget: Widget, message: Any, agent: Agent) -> dict[str, tuple[str, str, Any]]:
    """One successful call per delivery endpoint, for the API's contract test
    (``tests/test_api_openapi.py``), with the data those calls need."""
    from core.deliveries import plan_offline_message
    from core.models import OfflineMessage
    from core.webhooks import create_endpoint

    async with services.db.write() as session:
        kept = await create_endpoint(session, widget, {"url": "https://hooks.example/kept"})
        doomed = await create_endpoint(session, widget, {"url": "https://hooks.example/doomed", "events": ["lead.created"]})
        row = await session.get(OfflineMessage, message.id)
        await plan_offline_message(session, widget, row)
        await session.flush()
        [dead] = (await session.execute(select(OutboxItem).where(OutboxItem.ref_id == message.id))).scalars()
        dead.status, dead.attempts, dead.last_error = "dead", 8, "HTTP 500"
    key = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
    return {
        "createWebhook": ("POST", f"/api/v1/widgets/{widget.id}/webhooks", {"url": "https://hooks.example/new", "events": ["lead.created"]}),
        "listWidgetWebhooks": ("GET", f"/api/v1/widgets/{widget.id}/webhooks", None),
        "getWebhook": ("GET", f"/api/v1/webhooks/{kept.id}", None),
        "updateWebhook": ("PATCH", f"/api/v1/webhooks/{kept.id}", {"events": ["offline_message.created", "lead.created"]}),
        "deleteWebhook": ("DELETE", f"/api/v1/webhooks/{doomed.id}", None),
        "testWebhook": ("POST", f"/api/v1/webhooks/{kept.id}/test", None),
        "listOfflineMessageDeliveries": ("GET", f"/api/v1/offlinemessages/{message.id}/deliveries", None),
        "getDelivery": ("GET", f"/api/v1/deliveries/{dead.id}", None),
        "retryDelivery": ("POST", f"/api/v1/deliveries/{dead.id}/retry", None),
        "getWidgetNotifications": ("GET", f"/api/v1/widgets/{widget.id}/notifications", None),
        "updateWidgetNotifications": ("PATCH", f"/api/v1/widgets/{widget.id}/notifications", {"digest_time": "08:30", "transcript_email": True}),
        "putAgentPushover": ("PUT", f"/api/v1/agents/{agent.id}/pushover", {"user_key": key}),
        "getAgentPushover": ("GET", f"/api/v1/agents/{agent.id}/pushover", None),
        "deleteAgentPushover": ("DELETE", f"/api/v1/agents/{agent.id}/pushover", None),
    }
