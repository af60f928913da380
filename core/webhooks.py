"""Webhook endpoints and the events they receive, planned as outbox rows.

Every event becomes one outbox row per subscribed endpoint, written in the
transaction of the change. The row holds the exact body and the message id,
so a retry sends the same bytes under the same ``webhook-id`` (Standard
Webhooks): receivers deduplicate on that id. Signing and sending live in
``adapters/webhooks``; nothing here does I/O beyond the database session.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso, utcnow
from core.errors import NotFound, ValidationFailed
from core.models import OutboxItem, WebhookEndpoint, Widget
from core.outbox import enqueue

KIND = "webhook.send"
OFFLINE_MESSAGE_CREATED = "offline_message.created"
CONVERSATION_STARTED = "conversation.started"
CONVERSATION_CLOSED = "conversation.closed"
LEAD_CREATED = "lead.created"
EVENT_TYPES = (OFFLINE_MESSAGE_CREATED, CONVERSATION_STARTED, CONVERSATION_CLOSED, LEAD_CREATED)
TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS_PER_WIDGET = 20
FIELDS = {"url", "events", "enabled"}


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    """A message id unique across installs and database restores (unlike a row id)."""
    return "msg_" + secrets.token_urlsafe(18)


def _events(value: Any) -> list[str]:
    items = v.list_of(value, lambda e: v.choice(e, EVENT_TYPES), max_items=len(EVENT_TYPES))
    if not items:
        raise v.FieldError("must name at least one event: " + ", ".join(EVENT_TYPES))
    return sorted(set(items), key=EVENT_TYPES.index)


def clean_endpoint(data: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, FIELDS if not creating else {"url", "events"})
    c = v.Checker()
    out: dict[str, Any] = {}
    if creating and "url" not in data:
        c.errors["url"] = "is required"
    if "url" in data:
        out["url"] = c.check("url", v.http_url, data["url"], required=True)
    if "events" in data:
        out["events"] = c.check("events", _events, data["events"])
    elif creating:
        out["events"] = list(EVENT_TYPES)
    if "enabled" in data:
        out["enabled"] = c.check("enabled", v.boolean, data["enabled"])
    c.done()
    return out


async def create_endpoint(session: AsyncSession, widget: Widget, data: Any) -> WebhookEndpoint:
    """A new endpoint with a fresh secret; the caller shows the secret once."""
    fields = clean_endpoint(data, creating=True)
    if len(await list_endpoints(session, widget.id)) >= MAX_ENDPOINTS_PER_WIDGET:
        raise ValidationFailed.of({"url": f"a widget may have at most {MAX_ENDPOINTS_PER_WIDGET} webhook endpoints"})
    endpoint = WebhookEndpoint(widget_id=widget.id, secret=new_secret(), enabled=True, **fields)
    session.add(endpoint)
    await session.flush()
    return endpoint


async def update_endpoint(session: AsyncSession, endpoint: WebhookEndpoint, data: Any) -> WebhookEndpoint:
    fields = clean_endpoint(data, creating=False)
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if fields.get("enabled"):
        endpoint.disabled_reason = None
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession, widget_id: int | None = None) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    if widget_id is not None:
        query = query.where(WebhookEndpoint.widget_id == widget_id)
    return list((await session.execute(query)).scalars())


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint with id {endpoint_id}")
    return endpoint


def disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """The receiver said 410 Gone: stop sending until someone re-enables it."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason[:1000]


def event_body(event_type: str, data: dict[str, Any], at: datetime | None = None) -> str:
    """The JSON body every receiver gets: ``{"type", "timestamp", "data"}``.

    Serialized once, at planning time, so every retry sends identical bytes.
    """
    return json.dumps(
        {"type": event_type, "timestamp": iso(at or utcnow()), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _plan(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    body: str,
    event_type: str,
    ref: tuple[str, int] | None,
    ordered_by: str | None = None,
) -> OutboxItem:
    return enqueue(
        session,
        KIND,
        {
            "endpoint_id": endpoint.id,
            "url": endpoint.url,  # shown in the delivery list; the endpoint's current URL is used to send
            "event_type": event_type,
            "msg_id": new_message_id(),
            "body": body,
        },
        ordering_key=f"webhook:{endpoint.id}:{ordered_by}" if ordered_by else None,
        ref=ref,
    )


async def plan_webhook_event(
    session: AsyncSession,
    widget_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    ref: tuple[str, int] | None = None,
    ordered_by: str | None = None,
) -> int:
    """One delivery per enabled endpoint of the widget subscribed to ``event_type``.

    Events sharing ``ordered_by`` (one conversation's) reach each endpoint
    in the order they happened: a ``conversation.closed`` never overtakes
    its ``conversation.started``, even when the first one is being retried.
    """
    endpoints = await list_endpoints(session, widget_id)
    return plan_for_endpoints(session, endpoints, event_type, data, ref=ref, ordered_by=ordered_by)


def subscribed(endpoints: Iterable[Any], event_type: str) -> list[Any]:
    """The enabled ones of ``endpoints`` subscribed to ``event_type``: who gets the event."""
    return [e for e in endpoints if e.enabled and event_type in (e.events or ())]


def plan_for_endpoints(
    session: AsyncSession,
    endpoints: Iterable[Any],
    event_type: str,
    data: dict[str, Any],
    *,
    ref: tuple[str, int] | None = None,
    ordered_by: str | None = None,
) -> int:
    """Plan ``event_type`` for the enabled, subscribed ones of ``endpoints`` (rows or cached
    copies with ``id``, ``url``, ``enabled`` and ``events``); one body shared by all."""
    assert event_type in EVENT_TYPES, event_type
    planned = 0
    body: str | None = None
    for endpoint in subscribed(endpoints, event_type):
        body = body or event_body(event_type, data)
        _plan(session, endpoint, body, event_type, ref, ordered_by)
        planned += 1
    return planned


def plan_test_event(session: AsyncSession, endpoint: WebhookEndpoint) -> OutboxItem:
    """A ``webhook.test`` event for this endpoint only, sent once even if it is disabled."""
    body = event_body(TEST_EVENT, {"endpoint_id": endpoint.id, "widget_id": endpoint.widget_id, "test": True})
    return _plan(session, endpoint, body, TEST_EVENT, ("webhook_endpoint", endpoint.id))


def endpoint_to_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.id,
        "widget_id": endpoint.widget_id,
        "url": endpoint.url,
        "events": list(endpoint.events or []),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body
