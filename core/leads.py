"""Leads: contact details the assistant collected, stored as offline messages.

A lead is an offline message (the team already reads, digests and answers
those) plus a ``lead.created`` event for webhooks, so a CRM can pick up leads
without parsing every offline message. Everything happens in the caller's
transaction, together with the assistant's reply.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import iso
from core.deliveries import plan_lead_created, plan_offline_message
from core.models import Conversation, OfflineMessage, Widget
from core.offline import store_offline_message

LEAD_CREATED = "lead.created"  # bus event {widget_id, conversation_id, lead}; the webhook event has the same name


def lead_to_json(row: OfflineMessage, conv: Conversation | None, need: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "offline_message_id": row.id,
        "conversation_id": conv.id if conv else None,
        "name": row.name,
        "email": row.email,
        "need": need,
        "page_url": row.page_url,
        "source": "assistant",
        "created_at": iso(row.created_at),
    }


async def capture_lead(
    session: AsyncSession,
    widget: Widget,
    conv: Conversation | None,
    *,
    name: str | None,
    email: str,
    need: str | None,
) -> tuple[OfflineMessage, dict[str, Any], int]:
    """Store the lead and plan its deliveries; returns (row, lead JSON, outbox rows planned).

    The email is validated again here (``store_offline_message``), whatever
    the caller checked. The visitor's name and email are also kept on the
    conversation, so later agent replies can reach them by email.
    """
    need_text = (need or "").strip() or "(no question given)"
    where = f"\n\n(Left with the chat assistant, conversation {conv.id}.)" if conv else ""
    page = conv.page_url if conv and (conv.page_url or "").startswith(("http://", "https://")) else None
    row = await store_offline_message(
        session, widget, {"name": name, "email": email, "message": (need_text + where)[:5000], "page_url": page}
    )
    if conv is not None:
        conv.visitor_email = conv.visitor_email or row.email
        conv.visitor_name = conv.visitor_name or row.name
    lead = lead_to_json(row, conv, need_text)
    planned = await plan_offline_message(session, widget, row)
    planned += await plan_lead_created(session, widget.id, lead, ref=("offline_message", row.id))
    return row, lead, planned
