"""Who a Teams user is: their profile (cached) and the deskbell agent behind them.

An agent is created on first sight, matched by email when deskbell already
knows that address (an agent made with the CLI, the console or Slack), and
linked through :class:`AgentIdentity` from then on. The identity's user id
is the Entra object id when Teams gives one, because that is the id
Microsoft Graph presence takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.agents import create_agent
from core.db import Database
from core.models import Agent, AgentIdentity

PLATFORM = "teams"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    user_id: str  # the Entra object id, else the Bot Framework id (29:...)
    name: str
    email: str | None = None


@dataclass(frozen=True)
class AgentRef:
    id: int
    name: str


def user_key(channel_account_id: str | None, aad_object_id: str | None) -> str:
    return aad_object_id or f"bf:{channel_account_id or 'unknown'}"


def profile_from_member(member: dict[str, Any], fallback: Profile) -> Profile:
    """A ``TeamsChannelAccount`` (connector member lookup) as the bits deskbell keeps."""
    email = member.get("email") or member.get("userPrincipalName")
    name = member.get("name") or " ".join(p for p in (member.get("givenName"), member.get("surname")) if p)
    return Profile(
        user_id=member.get("aadObjectId") or fallback.user_id,
        name=str(name or fallback.name)[:200],
        email=str(email).lower() if email and "@" in str(email) else None,
    )


def placeholder_email(tenant_id: str, user_id: str) -> str:
    """For agents whose email Teams did not reveal (the member lookup failed)."""
    clean = "".join(c for c in f"{tenant_id[:8]}-{user_id}".lower() if c.isalnum() or c == "-")[:120]
    return f"teams-{clean}@users.noreply.invalid"


MemberLookup = Callable[[], Awaitable[dict[str, Any] | None]]


class Directory:
    def __init__(self, db: Database, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.clock = clock
        self._known: dict[tuple[str, str], tuple[float, AgentRef]] = {}

    async def agent_for(self, tenant_id: str, seen: Profile, lookup: MemberLookup | None = None) -> AgentRef:
        """The deskbell agent for a Teams user, created and linked on first sight.

        ``lookup`` fetches the member's record (name, email) from the
        connector; it is called only for users deskbell has not linked yet.
        """
        cached = self._known.get((tenant_id, seen.user_id))
        if cached and cached[0] > self.clock() and cached[1].name == seen.name:
            return cached[1]
        for attempt in range(3):  # a concurrent first sight of the same user may win the insert
            try:
                ref = await self._link(tenant_id, seen, lookup)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        if len(self._known) > 5000:
            self._known.clear()
        self._known[(tenant_id, seen.user_id)] = (self.clock() + self.ttl_s, ref)
        return ref

    async def _find(self, session: Any, tenant_id: str, user_id: str) -> AgentIdentity | None:
        query = select(AgentIdentity).where(
            AgentIdentity.platform == PLATFORM,
            AgentIdentity.workspace_id == tenant_id,
            AgentIdentity.user_id == user_id,
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def _link(self, tenant_id: str, seen: Profile, lookup: MemberLookup | None) -> AgentRef:
        async with self.db.read() as session:
            identity = await self._find(session, tenant_id, seen.user_id)
        profile = seen
        if identity is None and lookup is not None:
            try:
                member = await lookup()
            except Exception:  # the email is a nicety: never fail the person's message over it
                log.warning("could not look up Teams member %s", seen.user_id, exc_info=True)
                member = None
            if member:
                profile = profile_from_member(member, seen)
        async with self.db.write() as session:
            identity = await self._find(session, tenant_id, seen.user_id)
            if identity is None:
                email = (profile.email or placeholder_email(tenant_id, seen.user_id)).lower()
                agent = (await session.execute(select(Agent).where(Agent.email == email))).scalar_one_or_none()
                if agent is None:
                    agent = await create_agent(session, {"name": profile.name or "Teams user", "email": email})
                    log.info("new agent %s (%s) from Teams user %s", agent.id, agent.name, seen.user_id)
                identity = AgentIdentity(agent_id=agent.id, platform=PLATFORM, workspace_id=tenant_id, user_id=seen.user_id)
                session.add(identity)
            if seen.name and identity.display_name != seen.name:
                identity.display_name = seen.name[:200]
            await session.flush()
            agent_row = await session.get(Agent, identity.agent_id)
            return AgentRef(identity.agent_id, agent_row.name if agent_row else seen.name)
