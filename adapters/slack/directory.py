"""Who a Slack user is: their profile (cached) and the deskbell agent behind them.

An agent is created on first sight, matched by the Slack profile's email
when deskbell already knows that address (an agent made with the CLI or the
console), and linked through :class:`AgentIdentity` from then on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.agents import create_agent
from core.db import Database
from core.models import Agent, AgentIdentity

from adapters.slack.clients import SlackClients

PLATFORM = "slack"
log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small expiring map; the clock is injectable so expiry is tested without waiting."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic, max_items: int = 5000) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_items = max_items
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or hit[0] <= self.clock():
            self._items.pop(key, None)
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self.max_items:
            now = self.clock()
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= self.max_items:
                self._items.pop(next(iter(self._items)))
        self._items[key] = (self.clock() + self.ttl_s, value)


@dataclass(frozen=True)
class Profile:
    user_id: str
    name: str
    email: str | None
    avatar_url: str | None
    is_bot: bool = False


@dataclass(frozen=True)
class AgentRef:
    id: int
    name: str
    avatar_url: str | None


def profile_from_user(user: dict[str, Any]) -> Profile:
    """The bits of a ``users.info`` user deskbell shows: the name people know them by."""
    p = user.get("profile") or {}
    name = (
        p.get("display_name_normalized")
        or p.get("display_name")
        or p.get("real_name_normalized")
        or p.get("real_name")
        or user.get("real_name")
        or user.get("name")
        or user.get("id", "someone")
    )
    avatar = p.get("image_192") or p.get("image_72") or p.get("image_48")
    return Profile(
        user_id=user.get("id", ""),
        name=str(name)[:200],
        email=(p.get("email") or None),
        avatar_url=avatar,
        is_bot=bool(user.get("is_bot")) or user.get("id") == "USLACKBOT",
    )


def placeholder_email(team_id: str, user_id: str) -> str:
    """For agents whose Slack profile hides the email (no users:read.email)."""
    return f"slack-{team_id.lower()}-{user_id.lower()}@users.noreply.invalid"


class Directory:
    def __init__(self, db: Database, clients: SlackClients, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.clients = clients
        self.clock = clock
        self._profiles: TTLCache[tuple[str, str], Profile] = TTLCache(ttl_s, lambda: self.clock())

    async def profile(self, team_id: str, user_id: str, client: AsyncWebClient | None = None) -> Profile:
        cached = self._profiles.get((team_id, user_id))
        if cached is not None:
            return cached
        client = client or await self.clients.for_team(team_id)
        response = await client.users_info(user=user_id)
        profile = profile_from_user(response["user"])
        self._profiles.put((team_id, user_id), profile)
        return profile

    async def names(self, team_id: str, user_ids: list[str], client: AsyncWebClient | None = None) -> dict[str, str]:
        """Display names for mentioned users; a failed lookup leaves the mention generic."""
        found = {}
        for user_id in dict.fromkeys(user_ids):
            try:
                found[user_id] = (await self.profile(team_id, user_id, client)).name
            except Exception:  # a mention is not worth failing a reply for
                log.warning("could not look up Slack user %s", user_id)
        return found

    async def agent_for(self, team_id: str, user_id: str, client: AsyncWebClient | None = None) -> AgentRef:
        """The deskbell agent for a Slack user, created and linked on first sight.

        When Slack cannot say who the user is right now, a known agent is
        still recognised from the stored identity: a reply is not lost to a
        failed profile lookup.
        """
        try:
            profile = await self.profile(team_id, user_id, client)
        except Exception:
            known = await self._known(team_id, user_id)
            if known is None:
                raise
            log.warning("users.info failed for %s; using the stored profile", user_id)
            return known
        for _ in range(2):  # a concurrent first sight of the same user may win the insert
            try:
                return await self._link(team_id, profile)
            except IntegrityError:
                continue
        return await self._link(team_id, profile)

    async def _known(self, team_id: str, user_id: str) -> AgentRef | None:
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(AgentIdentity, Agent.name)
                    .join(Agent, Agent.id == AgentIdentity.agent_id)
                    .where(AgentIdentity.platform == PLATFORM, AgentIdentity.workspace_id == team_id, AgentIdentity.user_id == user_id)
                )
            ).first()
        if row is None:
            return None
        identity, name = row
        return AgentRef(identity.agent_id, identity.display_name or name, identity.avatar_url)

    async def _link(self, team_id: str, profile: Profile) -> AgentRef:
        async with self.db.write() as session:
            identity = (
                await session.execute(
                    select(AgentIdentity).where(
                        AgentIdentity.platform == PLATFORM,
                        AgentIdentity.workspace_id == team_id,
                        AgentIdentity.user_id == profile.user_id,
                    )
                )
            ).scalar_one_or_none()
            if identity is None:
                email = (profile.email or placeholder_email(team_id, profile.user_id)).lower()
                agent = (await session.execute(select(Agent).where(Agent.email == email))).scalar_one_or_none()
                if agent is None:
                    agent = await create_agent(session, {"name": profile.name, "email": email})
                    log.info("new agent %s (%s) from Slack user %s", agent.id, agent.name, profile.user_id)
                identity = AgentIdentity(agent_id=agent.id, platform=PLATFORM, workspace_id=team_id, user_id=profile.user_id)
                session.add(identity)
            if (identity.display_name, identity.avatar_url) != (profile.name, profile.avatar_url):
                identity.display_name, identity.avatar_url = profile.name, profile.avatar_url
            await session.flush()
            return AgentRef(identity.agent_id, profile.name, profile.avatar_url)
