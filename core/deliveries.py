"""Which deliveries each event owes, and how deliveries are shown and retried.

Called inside the transaction of the change (the offline message stored,
the conversation opened or closed, the agent's reply stored): the change
and all its outbox rows commit together or not at all, which is what makes
"an offline message is never lost" true across crashes.

Delivery guarantee: at least once. A worker killed after the receiver got a
message but before the attempt was recorded delivers it again when the row's
lease runs out; webhooks carry the same ``webhook-id`` and emails the same
``Message-ID`` every time, so receivers can drop the repeat.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import webhooks as wh
from core.clock import utcnow
from core.conversations import conversation_to_json, message_to_json
from core.destinations import Destinations, any_push_key, destinations_of
from core.digests import first_line
from core.errors import Conflict, NotFound
from core.fanout import plan_offline_message_channel_posts
from core.links import conversation_path, offline_message_path
from core.mail import offline_notification_rows, plan_transcript, plan_visitor_reply
from core.models import (
    ChannelBinding,
    Conversation,
    DeliveryAttempt,
    Message,
    OfflineMessage,
    OutboxItem,
    WebhookEndpoint,
    Widget,
)
from core.offline import offline_message_to_json
from core.outbox import LEASE, outbox_item_to_json, retry_dead
from core.pushover import Push, plan_pushes


def _widget_ref(widget: Widget) -> dict[str, Any]:
    return {"id": widget.id, "key": widget.key, "name": widget.name}


async def _plan_webhooks(
    session: AsyncSession,
    widget_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    ref: tuple[str, int] | None = None,
    ordered_by: str | None = None,
) -> int:
    """``core.webhooks.plan_webhook_event`` over the cached endpoints (core/destinations.py):
    one row per enabled endpoint subscribed to ``event_type``, no query when nothing changed."""
    endpoints = (await destinations_of(session, widget_id)).endpoints
    return wh.plan_for_endpoints(session, endpoints, event_type, data, ref=ref, ordered_by=ordered_by)


async def _plan_pushes(session: AsyncSession, widget: Widget, push: Push, *, ref: tuple[str, int]) -> int:
    """Pushover rows; skipped without a query while no agent has a key (the usual case)."""
    if not await any_push_key(session):
        return 0
    return await plan_pushes(session, widget, push, ref=ref)


async def plan_offline_message(
    session: AsyncSession, widget: Widget, row: OfflineMessage, *, emails: list[dict[str, Any]] | None = None
) -> int:
    """Every destination of a new offline message: team email, webhooks, channels, pushes.

    With ``emails``, the team's emails are appended to it as outbox columns
    for the caller to write with others in one INSERT (``core.outbox.insert_rows``)
    instead of being added to the session.
    """
    ref = ("offline_message", row.id)
    message = offline_message_to_json(row)
    data = {"widget": _widget_ref(widget), "offline_message": message}
    mail = offline_notification_rows(widget, message)
    if emails is None:
        session.add_all(OutboxItem(**columns) for columns in mail)
    else:
        emails.extend(mail)
    planned = len(mail)
    planned += await _plan_webhooks(session, widget.id, wh.OFFLINE_MESSAGE_CREATED, data, ref=ref)
    planned += await plan_offline_message_channel_posts(session, widget.id, row.id)
    who = row.name or row.email
    push = Push(f"Offline message on {widget.name}", f"{who}: {first_line(row.message, 900)}", offline_message_path(row.id))
    planned += await _plan_pushes(session, widget, push, ref=ref)
    return planned


async def conversation_start_owes_nothing(session: AsyncSession, destinations: Destinations) -> bool:
    """Whether :func:`plan_conversation_started` would plan nothing for a chat of the widget
    with these ``destinations`` (no subscribed webhook, no push): its first line then owes
    only its relays, and PostgreSQL opens the chat with the line in one statement
    (core/line_batches.py)."""
    return start_owes_nothing(destinations, await any_push_key(session))


def start_owes_nothing(destinations: Destinations, push_keys: bool) -> bool:
    """:func:`conversation_start_owes_nothing` from what it reads (``push_keys``: whether any
    agent has a push key)."""
    return not push_keys and not wh.subscribed(destinations.endpoints, wh.CONVERSATION_STARTED)


async def plan_conversation_started(session: AsyncSession, widget: Widget, conv: Conversation, message: Message) -> int:
    """A visitor's first message opened a chat: webhooks and pushes to agents away from the screen."""
    ref = ("conversation", conv.id)
    data = {
        "widget": _widget_ref(widget),
        "conversation": conversation_to_json(conv),
        "message": message_to_json(message),
    }
    planned = await _plan_webhooks(
        session, widget.id, wh.CONVERSATION_STARTED, data, ref=ref, ordered_by=f"conversation:{conv.id}"
    )
    who = conv.visitor_name or conv.visitor_email or "A visitor"
    push = Push(f"New chat on {widget.name}", f"{who}: {first_line(message.text, 900)}", conversation_path(conv.id))
    planned += await _plan_pushes(session, widget, push, ref=ref)
    return planned


async def plan_conversation_closed(session: AsyncSession, conv: Conversation) -> int:
    widget = await session.get(Widget, conv.widget_id)
    assert widget is not None
    data = {"widget": _widget_ref(widget), "conversation": conversation_to_json(conv)}
    planned = await _plan_webhooks(
        session, conv.widget_id, wh.CONVERSATION_CLOSED, data, ref=("conversation", conv.id), ordered_by=f"conversation:{conv.id}"
    )
    planned += await plan_transcript(session, conv)
    return planned


def plan_agent_reply(session: AsyncSession, conv: Conversation, message: Message) -> int:
    """An email to the visitor in case they have left (see ``core/mail.py`` for when it is skipped)."""
    return plan_visitor_reply(session, conv, message)


async def plan_lead_created(
    session: AsyncSession, widget_id: int, lead: dict[str, Any], *, ref: tuple[str, int] | None = None
) -> int:
    """``lead.created`` webhooks; ``lead`` is the lead's JSON (name, email, ... as its owner defines)."""
    widget = await session.get(Widget, widget_id)
    if widget is None:
        raise NotFound(f"no widget with id {widget_id}")
    data = {"widget": _widget_ref(widget), "lead": lead}
    return await _plan_webhooks(session, widget_id, wh.LEAD_CREATED, data, ref=ref)


# ---------------------------------------------------------------- showing deliveries


def describe_destination(kind: str, payload: dict[str, Any]) -> str | None:
    """Where a delivery goes, in a few words (never a secret)."""
    if kind.startswith("email."):
        return f"email to {payload.get('to')}"
    if kind == wh.KIND:
        return f"webhook {payload.get('event_type')} to {payload.get('url')}"
    if kind.startswith("pushover."):
        return f"Pushover to agent {payload.get('agent_id')}"
    platform, _, what = kind.partition(".")
    if "binding_id" in payload:
        return f"{platform} {what.replace('_', ' ')} (channel binding {payload['binding_id']})"
    return None


def delivery_to_json(item: OutboxItem, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        **outbox_item_to_json(item, attempts),
        "ref_type": item.ref_type,
        "ref_id": item.ref_id,
        "destination": describe_destination(item.kind, item.payload or {}),
    }


async def _attempts(session: AsyncSession, ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    out: dict[int, list[DeliveryAttempt]] = {i: [] for i in ids}
    if ids:
        query = select(DeliveryAttempt).where(DeliveryAttempt.outbox_id.in_(ids)).order_by(DeliveryAttempt.id)
        for attempt in (await session.execute(query)).scalars():
            out[attempt.outbox_id].append(attempt)
    return out


async def deliveries_for(session: AsyncSession, ref_type: str, ref_id: int) -> list[dict[str, Any]]:
    """Every delivery a thing caused, oldest first, each with its attempt log."""
    query = select(OutboxItem).where(OutboxItem.ref_type == ref_type, OutboxItem.ref_id == ref_id).order_by(OutboxItem.id)
    items = list((await session.execute(query)).scalars())
    attempts = await _attempts(session, [i.id for i in items])
    return [delivery_to_json(i, attempts[i.id]) for i in items]


async def get_delivery(session: AsyncSession, delivery_id: int) -> dict[str, Any]:
    item = await session.get(OutboxItem, delivery_id)
    if item is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    return delivery_to_json(item, (await _attempts(session, [item.id]))[item.id])


def lease_now(item: OutboxItem) -> None:
    """Mark a row being planned as claimed by the caller, who delivers it at once
    (the CLI's test-send): workers leave it alone until the lease runs out."""
    item.status = "delivering"
    item.locked_until = utcnow() + LEASE


async def retry_delivery(session: AsyncSession, delivery_id: int) -> OutboxItem:
    """A dead delivery gets a fresh schedule; anything else is refused, not silently ignored."""
    item = await session.get(OutboxItem, delivery_id, with_for_update=True)
    if item is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    if item.status != "dead":
        raise Conflict(f"delivery {delivery_id} is {item.status}; only dead deliveries can be retried")
    await retry_dead(session, delivery_id)
    return item


# ---------------------------------------------------------------- configuration check


async def widgets_without_destination(session: AsyncSession) -> list[Widget]:
    """Enabled widgets taking offline messages that nobody would see: no team email,
    no enabled webhook for ``offline_message.created``, no bound channel."""
    widgets = (
        await session.execute(
            select(Widget)
            .where(Widget.enabled.is_(True), Widget.offline_form.is_(True))
            .where(~exists().where(ChannelBinding.widget_id == Widget.id, ChannelBinding.status == "ok"))
            .order_by(Widget.id)
        )
    ).scalars()
    endpoints: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in (await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))).scalars():
        endpoints.setdefault(endpoint.widget_id, []).append(endpoint)
    gaps = []
    for widget in widgets:
        if widget.notify_emails:
            continue
        if any(wh.OFFLINE_MESSAGE_CREATED in (e.events or ()) for e in endpoints.get(widget.id, [])):
            continue
        gaps.append(widget)
    return gaps


STUCK_AFTER = timedelta(minutes=10)


async def delivery_warnings(session: AsyncSession, now: datetime | None = None) -> list[dict[str, Any]]:
    """What an operator should fix before trusting the offline path (shown by /readyz).

    Warnings, not failures: a widget nobody hears from is a configuration
    gap, not a reason to take the service out of the load balancer.
    """
    now = now or utcnow()
    warnings: list[dict[str, Any]] = [
        {
            "code": "no_destination",
            "widget_id": w.id,
            "message": f"widget {w.key} ({w.name}) takes offline messages but has no email, webhook or channel",
        }
        for w in await widgets_without_destination(session)
    ]
    stuck = await session.execute(
        select(OutboxItem.kind, func.count())
        .where(OutboxItem.status == "pending", OutboxItem.attempts == 0, OutboxItem.created_at < now - STUCK_AFTER)
        .group_by(OutboxItem.kind)
        .order_by(OutboxItem.kind)
    )
    for kind, count in stuck:
        warnings.append(
            {
                "code": "deliveries_waiting",
                "kind": kind,
                "message": f"{count} {kind} deliveries never tried for over 10 minutes: "
                "is a worker running with this destination configured?",
            }
        )
    return warnings
