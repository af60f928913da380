"""Agents: who answers, whether they are on duty, and console sign-in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.availability import AgentState, agent_available
from core.clock import iso, utcnow
from core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from core.models import Agent, AgentToken
from core.tokens import hash_secret, new_secret

DEFAULT_SESSION_TIMEOUT_S = 900
LOGIN_LINK_TTL = timedelta(days=7)
SESSION_TTL = timedelta(days=30)
# The smallest session timeout a widget may have: being seen again after this
# long may have made the agent available again, so listeners must re-check.
SEEN_REFRESH = timedelta(seconds=60)

FIELDS = {"name", "email", "on_duty", "stay_available", "avatar_url", "widget_ids"}


def _widget_ids(value: Any) -> list[int] | None:
    if value is None:
        return None
    return sorted(set(v.list_of(value, lambda i: v.integer(i, lo=1, hi=2**62), max_items=1000)))


def clean_agent(data: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, FIELDS)
    c = v.Checker()
    checks: dict[str, tuple[Any, dict[str, Any]]] = {
        "name": (v.text, {"max_len": 200}),
        "email": (v.email, {}),
        "on_duty": (v.boolean, {}),
        "stay_available": (v.boolean, {}),
        "avatar_url": (v.http_url, {"max_len": 1000}),
        "widget_ids": (_widget_ids, {}),
    }
    if creating:
        for field in ("name", "email"):
            if field not in data:
                c.errors[field] = "is required"
    out = {f: c.check(f, checks[f][0], val, **checks[f][1]) for f, val in data.items()}
    c.done()
    if "email" in out:
        out["email"] = out["email"].lower()
    return out


async def _email_taken(session: AsyncSession, email: str, agent_id: int | None) -> bool:
    found = (await session.execute(select(Agent.id).where(Agent.email == email))).scalar_one_or_none()
    return found is not None and found != agent_id


async def create_agent(session: AsyncSession, data: dict[str, Any]) -> Agent:
    fields = clean_agent(data, creating=True)
    if await _email_taken(session, fields["email"], None):
        raise Conflict(f"an agent with email {fields['email']} already exists")
    agent = Agent(**{"on_duty": False, "stay_available": False, **fields})
    session.add(agent)
    await session.flush()
    return agent


async def update_agent(session: AsyncSession, agent: Agent, data: dict[str, Any]) -> Agent:
    fields = clean_agent(data, creating=False)
    if "email" in fields and await _email_taken(session, fields["email"], agent.id):
        raise Conflict(f"an agent with email {fields['email']} already exists")
    for field, value in fields.items():
        setattr(agent, field, value)
    if fields.get("on_duty"):
        agent.last_seen_at = utcnow()  # going on duty is an action: the agent is here
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"no agent with id {agent_id}")
    return agent


async def find_agent(session: AsyncSession, ref: str) -> Agent:
    """An agent by id or email."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return await get_agent(session, int(ref))
    agent = (await session.execute(select(Agent).where(Agent.email == ref.lower()))).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"no agent with email {ref}")
    return agent


async def set_duty(session: AsyncSession, agent: Agent, on_duty: bool) -> Agent:
    """``/chat-online`` puts an agent on duty and marks them seen; off is immediate."""
    agent.on_duty = on_duty
    if on_duty:
        agent.last_seen_at = utcnow()
    await session.flush()
    return agent


def mark_seen(agent: Agent, now: datetime | None = None) -> bool:
    """Record an action by the agent. True when listeners should re-check status
    (the previous sighting is old enough that availability may have changed)."""
    now = now or utcnow()
    previous = agent.last_seen_at
    agent.last_seen_at = now
    return previous is None or now - previous >= SEEN_REFRESH


def agent_state(agent: Agent) -> AgentState:
    ids = frozenset(agent.widget_ids) if agent.widget_ids is not None else None
    return AgentState(
        id=agent.id,
        on_duty=agent.on_duty,
        stay_available=agent.stay_available,
        last_seen_at=agent.last_seen_at,
        widget_ids=ids,
    )


def agent_to_json(
    agent: Agent, now: datetime | None = None, session_timeout_s: int = DEFAULT_SESSION_TIMEOUT_S
) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "on_duty": agent.on_duty,
        "stay_available": agent.stay_available,
        "last_seen_at": iso(agent.last_seen_at),
        "available": agent_available(agent_state(agent), now, session_timeout_s),
        "avatar_url": agent.avatar_url,
        "widget_ids": agent.widget_ids,
        "created_at": iso(agent.created_at),
    }


async def issue_token(session: AsyncSession, agent: Agent, kind: str) -> str:
    """A new console credential (``login`` link or ``session`` cookie); only its hash is kept."""
    ttl = LOGIN_LINK_TTL if kind == "login" else SESSION_TTL
    token = new_secret("dl_" if kind == "login" else "ds_")
    session.add(
        AgentToken(agent_id=agent.id, kind=kind, token_hash=hash_secret(token), expires_at=utcnow() + ttl)
    )
    await session.flush()
    return token


async def agent_for_token(session: AsyncSession, token: str | None, kind: str) -> Agent:
    if not token or len(token) > 200:
        raise Unauthorized("sign in with the link from `deskbell agent create` or `deskbell agent link`")
    row = (
        await session.execute(
            select(AgentToken).where(AgentToken.token_hash == hash_secret(token), AgentToken.kind == kind)
        )
    ).scalar_one_or_none()
    if row is None or row.expires_at <= utcnow():
        raise Unauthorized("this sign-in link or session has expired; ask for a new link")
    return await get_agent(session, row.agent_id)


async def revoke_token(session: AsyncSession, token: str) -> None:
    await session.execute(delete(AgentToken).where(AgentToken.token_hash == hash_secret(token)))
