"""What the assistant stores: its state per conversation, its settings per widget, its token spend.

Rows are created on first use and updated with guarded statements, so two
processes touching one conversation (the worker answering, a web process
storing an agent's reply that stops the assistant) never lose a change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.assistant import ThreadState
from core.assistant_config import AssistantConfig, clean_config, config_from
from core.clock import utcnow
from core.models import AssistantSettings, AssistantThread, AssistantUsage, Conversation, OutboxItem, Widget

AI_REPLY = "ai.reply"  # the outbox kind of the assistant's answers (core/fanout.py plans them)
ACTIVE = "active"
HANDED_OFF = "handed_off"
STOPPED = "stopped"


async def _thread(session: AsyncSession, conversation_id: int, *, lock: bool = False) -> AssistantThread:
    row = await session.get(AssistantThread, conversation_id, with_for_update=lock)
    if row is not None:
        return row
    try:
        async with session.begin_nested():
            row = AssistantThread(conversation_id=conversation_id, status=ACTIVE, unanswered=0, last_answered_seq=0)
            session.add(row)
            await session.flush()
    except IntegrityError:  # created meanwhile by another transaction
        row = await session.get(AssistantThread, conversation_id, with_for_update=lock, populate_existing=True)
        assert row is not None
    return row


async def assistant_speaks(session: AsyncSession, conversation_id: int) -> bool:
    """False once the conversation was handed to a person or a person replied in it."""
    status = (
        await session.execute(select(AssistantThread.status).where(AssistantThread.conversation_id == conversation_id))
    ).scalar_one_or_none()
    return status in (None, ACTIVE)


def may_be_answering(conv: Conversation, widget: Widget) -> bool:
    """False when the assistant surely does not answer in the chat (no query needed): it is
    closed or claimed, or its widget has the assistant off."""
    return conv.status == "open" and conv.claimed_by is None and widget.ai_enabled


async def assistant_answering(session: AsyncSession, conv: Conversation, widget: Widget) -> bool:
    """Whether a chat's thread root should offer "Take over": the chat is open and unclaimed, its
    widget has the assistant on, the assistant was asked to answer in it (an ``ai.reply`` was
    planned, possibly not yet handled) and nobody has silenced it since."""
    if not may_be_answering(conv, widget):
        return False
    status = (
        await session.execute(select(AssistantThread.status).where(AssistantThread.conversation_id == conv.id))
    ).scalar_one_or_none()
    if status is not None:
        return status == ACTIVE
    planned = select(OutboxItem.id).where(
        OutboxItem.ref_type == "conversation", OutboxItem.ref_id == conv.id, OutboxItem.kind == AI_REPLY
    )
    return (await session.execute(planned.limit(1))).scalar_one_or_none() is not None


async def quiet_reason(session: AsyncSession, conversation_id: int) -> tuple[str, str | None] | None:
    """(status, reason) when the assistant no longer speaks in the conversation, else None."""
    row = (
        await session.execute(
            select(AssistantThread.status, AssistantThread.reason).where(AssistantThread.conversation_id == conversation_id)
        )
    ).one_or_none()
    if row is None or row.status == ACTIVE:
        return None
    return row.status, row.reason


async def load_thread(session: AsyncSession, conversation_id: int, *, lock: bool = False) -> tuple[ThreadState, int]:
    """The conversation's state and the seq of the last visitor message already answered."""
    row = await _thread(session, conversation_id, lock=lock)
    state = ThreadState(status=row.status, reason=row.reason, unanswered=row.unanswered, lead=row.lead)
    return state, row.last_answered_seq


async def save_thread(
    session: AsyncSession, conversation_id: int, state: ThreadState, *, answered_seq: int | None = None
) -> None:
    row = await _thread(session, conversation_id)
    row.status, row.reason, row.unanswered, row.lead = state.status, state.reason, state.unanswered, state.lead
    if answered_seq is not None:
        row.last_answered_seq = max(row.last_answered_seq, answered_seq)
    row.updated_at = utcnow()
    await session.flush()


async def stop_assistant(session: AsyncSession, conversation_id: int, reason: str) -> bool:
    """A person took over (replied, claimed, pressed "Take over"): the assistant stays quiet.

    True when this call stopped it. Idempotent; in the caller's transaction.
    """
    row = await _thread(session, conversation_id, lock=True)
    if row.status != ACTIVE:
        return False
    row.status, row.reason, row.lead, row.updated_at = STOPPED, reason, None, utcnow()
    await session.flush()
    return True


# ---------------------------------------------------------------- settings


async def get_config(session: AsyncSession, widget_id: int) -> AssistantConfig:
    row = await session.get(AssistantSettings, widget_id)
    return config_from(row.config if row else None)


async def update_config(session: AsyncSession, widget_id: int, data: Any) -> AssistantConfig:
    """Change some settings; the others keep their value."""
    row = await session.get(AssistantSettings, widget_id)
    merged = clean_config(data, base=dict(row.config) if row else {})
    if row is None:
        session.add(AssistantSettings(widget_id=widget_id, config=merged))
    else:
        row.config = merged
        row.updated_at = utcnow()
    await session.flush()
    return config_from(merged)


# ---------------------------------------------------------------- token budget


def day_of(at: datetime | None = None) -> str:
    return (at or utcnow()).strftime("%Y-%m-%d")


async def tokens_used(session: AsyncSession, widget_id: int, day: str | None = None) -> int:
    query = select(AssistantUsage.tokens).where(AssistantUsage.widget_id == widget_id, AssistantUsage.day == (day or day_of()))
    return int((await session.execute(query)).scalar_one_or_none() or 0)


async def add_usage(session: AsyncSession, widget_id: int, tokens: int, day: str | None = None) -> None:
    """Count one model reply and its tokens against the widget's day."""
    day = day or day_of()
    table = AssistantUsage.__table__
    bump = (
        update(table)
        .where(table.c.widget_id == widget_id, table.c.day == day)
        .values(tokens=table.c.tokens + tokens, replies=table.c.replies + 1)
    )
    if (await session.execute(bump)).rowcount:
        return
    try:
        async with session.begin_nested():
            session.add(AssistantUsage(widget_id=widget_id, day=day, tokens=tokens, replies=1))
            await session.flush()
    except IntegrityError:
        await session.execute(bump)
