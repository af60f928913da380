"""Pushover pushes to agents: who gets one, and the outbox rows that carry them.

An agent gets a push for a new chat or an offline message when a push is the
way to reach them: they are on duty and either pinned available
(``stay_available``: they promised to answer without watching a screen) or
their session has lapsed (off-screen). An agent at the screen sees the
channel already; an agent off duty is not working and is not disturbed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import agent_state
from core.availability import AgentState, agent_available, agent_serves
from core.clock import utcnow
from core.errors import ValidationFailed
from core.models import Agent, AgentPushover, Widget
from core.outbox import enqueue

KIND = "pushover.send"
USER_KEY = re.compile(r"^[A-Za-z0-9]{30}$")  # Pushover user and group keys are 30 characters
MAX_TITLE = 250
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Push:
    title: str
    message: str
    link_path: str  # made absolute with the public URL when sent


def wants_push(agent: AgentState, widget_id: int, now: datetime, session_timeout_s: int) -> bool:
    """On duty, serving the widget, and pinned available or off-screen."""
    if not agent.on_duty or not agent_serves(agent, widget_id):
        return False
    if agent.stay_available:
        return True
    seen = agent_available(AgentState(agent.id, True, False, agent.last_seen_at), now, session_timeout_s)
    return not seen


def clean_user_key(value: Any) -> str:
    if not isinstance(value, str) or not USER_KEY.match(value.strip()):
        raise ValidationFailed.of({"user_key": "must be a 30-character Pushover user or group key"})
    return value.strip()


async def set_user_key(session: AsyncSession, agent: Agent, user_key: Any) -> AgentPushover:
    key = clean_user_key(user_key)
    row = await session.get(AgentPushover, agent.id)
    if row is None:
        row = AgentPushover(agent_id=agent.id, user_key=key)
        session.add(row)
    row.user_key = key
    await session.flush()
    return row


async def clear_user_key(session: AsyncSession, agent: Agent) -> bool:
    row = await session.get(AgentPushover, agent.id)
    if row is None:
        return False
    await session.delete(row)
    await session.flush()
    return True


async def user_key_of(session: AsyncSession, agent_id: int) -> str | None:
    row = await session.get(AgentPushover, agent_id)
    return row.user_key if row else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def plan_pushes(session: AsyncSession, widget: Widget, push: Push, *, ref: tuple[str, int] | None) -> int:
    """One row per agent with a user key who should be pushed right now."""
    now = utcnow()
    rows = await session.execute(select(Agent).join(AgentPushover, AgentPushover.agent_id == Agent.id))
    planned = 0
    for agent in rows.scalars():
        if not wants_push(agent_state(agent), widget.id, now, widget.session_timeout_s):
            continue
        enqueue(
            session,
            KIND,
            {
                "agent_id": agent.id,
                "title": _clip(push.title, MAX_TITLE),
                "message": _clip(push.message, MAX_MESSAGE),
                "link_path": push.link_path,
            },
            ref=ref,
        )
        planned += 1
    return planned
