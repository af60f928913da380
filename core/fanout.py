"""Which deliveries a change owes, written into the change's own transaction.

Chat relays go to every channel bound to the widget as outbox rows of kind
``{platform}.relay`` / ``{platform}.root_update``; the platform adapter
registers the handler. Rows of one conversation on one channel share an
ordering key, so the thread's root is posted before its replies.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.assistant_state import assistant_speaks
from core.destinations import destinations_of
from core.models import Conversation, Message, OutboxItem
from core.outbox import enqueue, outbox_row


RELAY_ORDERING_PREFIX = "relay:"  # core/line_batches.py builds the same key in SQL


def relay_kind(platform: str) -> str:
    """The outbox kind relaying a chat line into a channel of ``platform``."""
    return f"{platform}.relay"


def relay_ordering_key(binding_id: int, conversation_id: int) -> str:
    return f"{RELAY_ORDERING_PREFIX}{binding_id}:{conversation_id}"


async def message_relay_rows(
    session: AsyncSession, conv: Conversation, message: Message, *, exclude_binding_id: int | None = None
) -> list[dict[str, Any]]:
    """The outbox rows relaying a stored message into every bound channel but the one it came from."""
    return [
        outbox_row(
            relay_kind(binding.platform),
            {"binding_id": binding.id, "conversation_id": conv.id, "message_id": message.id},
            ordering_key=relay_ordering_key(binding.id, conv.id),
            ref=("conversation", conv.id),
        )
        for binding in (await destinations_of(session, conv.widget_id)).bindings
        if binding.id != exclude_binding_id
    ]


async def plan_message_relay(
    session: AsyncSession, conv: Conversation, message: Message, *, exclude_binding_id: int | None = None
) -> int:
    """Relay a stored message into every bound channel but the one it came from."""
    rows = await message_relay_rows(session, conv, message, exclude_binding_id=exclude_binding_id)
    session.add_all([OutboxItem(**row) for row in rows])
    return len(rows)


async def plan_root_update(session: AsyncSession, conv: Conversation) -> int:
    """Refresh the thread's root (claimed by, closed, "Take over" offered) in every bound channel."""
    planned = 0
    for binding in (await destinations_of(session, conv.widget_id)).bindings:
        enqueue(
            session,
            f"{binding.platform}.root_update",
            {"binding_id": binding.id, "conversation_id": conv.id},
            ordering_key=relay_ordering_key(binding.id, conv.id),
            ref=("conversation", conv.id),
        )
        planned += 1
    return planned


async def plan_offline_message_channel_posts(session: AsyncSession, widget_id: int, offline_message_id: int) -> int:
    """Post a stored offline message into every channel bound to its widget.

    Rows of kind ``{platform}.offline_post`` {binding_id, offline_message_id};
    the platform adapter registers the handler (Slack adds a "Mark handled"
    button). Call it in the transaction that stores the message.
    """
    planned = 0
    for binding in (await destinations_of(session, widget_id)).bindings:
        enqueue(
            session,
            f"{binding.platform}.offline_post",
            {"binding_id": binding.id, "offline_message_id": offline_message_id},
            ref=("offline_message", offline_message_id),
        )
        planned += 1
    return planned


async def ai_reply_rows(session: AsyncSession, conv: Conversation, message: Message) -> list[dict[str, Any]]:
    """Have the assistant answer a visitor message, unless a person has taken the conversation.

    One ``ai.reply`` row {conversation_id, message_id}; rows of one
    conversation share an ordering key, so answers come in question order and
    the worker answers each once however many web processes stored them.
    """
    if not await assistant_speaks(session, conv.id):
        return []
    return [
        outbox_row(
            "ai.reply",
            {"conversation_id": conv.id, "message_id": message.id},
            ordering_key=f"ai:{conv.id}",
            ref=("conversation", conv.id),
        )
    ]
