"""What the console shows: conversations with their widget, claimer and last line.

Read-only queries shaped for the console. Access follows the agent's
``widget_ids`` (None means every widget): an agent sees only conversations
of the widgets they answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import iso
from core.conversations import conversation_to_json, get_conversation, messages_after
from core.errors import NotFound
from core.models import Agent, Conversation, Message, Widget

PREVIEW_CHARS = 160
MAX_MESSAGES = 10_000


def serves(widget_ids: list[int] | None, widget_id: int) -> bool:
    return widget_ids is None or widget_id in widget_ids


def _preview(message: Message | None) -> dict[str, Any] | None:
    if message is None:
        return None
    text = message.text if len(message.text) <= PREVIEW_CHARS else message.text[: PREVIEW_CHARS - 1] + "…"
    return {
        "seq": message.seq,
        "from": message.sender,
        "author": message.author,
        "text": text,
        "internal": message.internal,
        "created_at": iso(message.created_at),
    }


async def _names(session: AsyncSession, model: type[Widget] | type[Agent], ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(model.id, model.name).where(model.id.in_(wanted)))
    return {row_id: name for row_id, name in rows.all()}


async def _last_messages(session: AsyncSession, conversation_ids: list[int]) -> dict[int, Message]:
    if not conversation_ids:
        return {}
    latest = (
        select(Message.conversation_id, func.max(Message.seq).label("seq"))
        .where(Message.conversation_id.in_(conversation_ids))
        .group_by(Message.conversation_id)
        .subquery()
    )
    query = select(Message).join(
        latest, (Message.conversation_id == latest.c.conversation_id) & (Message.seq == latest.c.seq)
    )
    return {m.conversation_id: m for m in (await session.execute(query)).scalars()}


async def summaries(session: AsyncSession, conversations: list[Conversation]) -> list[dict[str, Any]]:
    """Each conversation as the console list shows it."""
    widgets = await _names(session, Widget, (c.widget_id for c in conversations))
    agents = await _names(session, Agent, (c.claimed_by for c in conversations))
    last = await _last_messages(session, [c.id for c in conversations])
    return [
        {
            **conversation_to_json(c),
            "widget_name": widgets.get(c.widget_id),
            "claimed_by_name": agents.get(c.claimed_by) if c.claimed_by else None,
            "last_message": _preview(last.get(c.id)),
        }
        for c in conversations
    ]


async def summary(session: AsyncSession, conversation: Conversation) -> dict[str, Any]:
    return (await summaries(session, [conversation]))[0]


async def visible_conversation(session: AsyncSession, agent: Agent, conversation_id: int) -> Conversation:
    """The conversation if this agent may see it; otherwise it does not exist for them."""
    conv = await get_conversation(session, conversation_id)
    if not serves(agent.widget_ids, conv.widget_id):
        raise NotFound(f"no conversation with id {conversation_id}")
    return conv


async def list_for_agent(
    session: AsyncSession, agent: Agent, *, status: str, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of conversations, newest first, and the cursor for the next page."""
    query = select(Conversation).where(Conversation.status == status)
    if agent.widget_ids is not None:
        query = query.where(Conversation.widget_id.in_(agent.widget_ids or [-1]))
    if before_id is not None:
        query = query.where(Conversation.id < before_id)
    rows = list((await session.execute(query.order_by(Conversation.id.desc()).limit(limit + 1))).scalars())
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return await summaries(session, rows[:limit]), next_cursor


async def all_messages(session: AsyncSession, conversation_id: int) -> list[Message]:
    """Every message of a conversation in order, internal notes included."""
    out: list[Message] = []
    after = 0
    while len(out) < MAX_MESSAGES:
        batch = await messages_after(session, conversation_id, after, include_internal=True, limit=1000)
        out.extend(batch)
        if len(batch) < 1000:
            break
        after = batch[-1].seq
    return out


async def widgets_for_agent(session: AsyncSession, agent: Agent) -> list[Widget]:
    query = select(Widget).order_by(Widget.id)
    if agent.widget_ids is not None:
        query = query.where(Widget.id.in_(agent.widget_ids or [-1]))
    return list((await session.execute(query)).scalars())
