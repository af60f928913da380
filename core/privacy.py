"""Privacy: retention of visitor data and a visitor's rights to a copy and to erasure.

Retention is per widget (``retention_days``; null keeps data until deleted).
Export and erasure find a visitor by the email they gave, in offline messages
and in conversations.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import utcnow
from core.conversations import conversation_to_json, message_to_json
from core.errors import ValidationFailed
from core.models import Conversation, Message, OfflineMessage, Widget
from core.offline import offline_message_to_json


def clean_email(value: Any) -> str:
    try:
        email = v.email(value)
    except v.FieldError as exc:
        raise ValidationFailed.of({"email": str(exc)}) from exc
    assert email is not None
    return email


async def purge_expired(session: AsyncSession, now: datetime | None = None) -> dict[str, int]:
    """Delete offline messages and closed conversations older than their widget's retention."""
    now = now or utcnow()
    removed = {"offline_messages": 0, "conversations": 0}
    widgets = (await session.execute(select(Widget.id, Widget.retention_days).where(Widget.retention_days.is_not(None)))).all()
    for widget_id, days in widgets:
        cutoff = now - timedelta(days=days)
        gone = await session.execute(
            delete(OfflineMessage).where(OfflineMessage.widget_id == widget_id, OfflineMessage.created_at < cutoff)
        )
        removed["offline_messages"] += int(gone.rowcount or 0)
        # Open conversations stay until closed: someone may still be answering.
        gone = await session.execute(
            delete(Conversation).where(
                Conversation.widget_id == widget_id,
                Conversation.status == "closed",
                Conversation.updated_at < cutoff,
            )
        )
        removed["conversations"] += int(gone.rowcount or 0)
    return removed


def _conversations_of(email: str) -> Any:
    return select(Conversation).where(func.lower(Conversation.visitor_email) == email.lower())


def _offline_of(email: str) -> Any:
    return select(OfflineMessage).where(func.lower(OfflineMessage.email) == email.lower())


async def export_visitor(session: AsyncSession, email: Any) -> dict[str, Any]:
    """Everything stored about the visitor who gave ``email``."""
    email = clean_email(email)
    offline = list((await session.execute(_offline_of(email).order_by(OfflineMessage.id))).scalars())
    conversations = list((await session.execute(_conversations_of(email).order_by(Conversation.id))).scalars())
    out_conversations = []
    for conv in conversations:
        messages = (
            await session.execute(
                select(Message)
                .where(Message.conversation_id == conv.id, Message.internal.is_(False))
                .order_by(Message.seq)
            )
        ).scalars()
        out_conversations.append({**conversation_to_json(conv), "messages": [message_to_json(m) for m in messages]})
    return {
        "email": email,
        "offline_messages": [offline_message_to_json(m) for m in offline],
        "conversations": out_conversations,
    }


async def erase_visitor(session: AsyncSession, email: Any) -> dict[str, int]:
    """Delete the visitor's offline messages and conversations (their messages go with them)."""
    email = clean_email(email)
    offline = await session.execute(delete(OfflineMessage).where(func.lower(OfflineMessage.email) == email.lower()))
    conversations = await session.execute(
        delete(Conversation).where(func.lower(Conversation.visitor_email) == email.lower())
    )
    return {"offline_messages": int(offline.rowcount or 0), "conversations": int(conversations.rowcount or 0)}
