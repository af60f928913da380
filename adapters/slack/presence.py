"""Slack presence keeps on-duty agents seen while they are active in Slack.

Slack sends modern apps no presence events, so we poll ``users.getPresence``
(Tier 3: about 50 calls per minute per workspace). The plan is pure: each
agent is polled at most every ``interval_s`` (their last answer is the
cache), oldest first, within a per-workspace budget per tick; a 429 pauses
that workspace for ``Retry-After``. An ``active`` answer marks the agent
seen; anything else simply lets their session run out, so a team that
closes Slack goes offline by itself when the widget's session timeout passes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from core.db import Database
from core.models import Agent, AgentIdentity
from core.services import Services
from core.wakeups import wait_for_wake

from adapters.slack.clients import SlackClients
from adapters.slack.errors import NoInstallation, retry_after_s

log = logging.getLogger(__name__)
PLATFORM = "slack"


@dataclass(frozen=True)
class Watched:
    agent_id: int
    team_id: str
    user_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.team_id, self.user_id)


def plan_polls(
    watched: Iterable[Watched],
    last_polled: Mapping[tuple[str, str], float],
    paused_until: Mapping[str, float],
    now: float,
    *,
    interval_s: float,
    calls_per_minute: int,
    tick_s: float,
) -> list[Watched]:
    """Who to ask about now: due agents, oldest answer first, within each workspace's budget."""
    by_team: dict[str, list[Watched]] = {}
    for w in watched:
        by_team.setdefault(w.team_id, []).append(w)
    budget = max(1, math.floor(calls_per_minute * tick_s / 60))
    plan: list[Watched] = []
    for team, members in sorted(by_team.items()):
        if paused_until.get(team, 0.0) > now:
            continue
        # Many agents stretch everyone's interval so the workspace stays within its rate.
        spacing = max(interval_s, len(members) * 60.0 / calls_per_minute)
        due = [w for w in members if now - last_polled.get(w.key, -math.inf) >= spacing]
        due.sort(key=lambda w: last_polled.get(w.key, -math.inf))
        plan.extend(due[:budget])
    return plan


async def watched_agents(db: Database) -> list[Watched]:
    """On-duty agents with a Slack identity whose availability depends on being seen."""
    query = (
        select(AgentIdentity.agent_id, AgentIdentity.workspace_id, AgentIdentity.user_id)
        .join(Agent, Agent.id == AgentIdentity.agent_id)
        .where(AgentIdentity.platform == PLATFORM, Agent.on_duty.is_(True), Agent.stay_available.is_(False))
        .order_by(AgentIdentity.id)
    )
    async with db.read() as session:
        return [Watched(int(a), str(t), str(u)) for a, t, u in (await session.execute(query)).all()]


class PresencePoller:
    def __init__(
        self,
        svc: Services,
        clients: SlackClients,
        *,
        interval_s: float = 30.0,
        calls_per_minute: int = 40,
        tick_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.svc = svc
        self.clients = clients
        self.interval_s = interval_s
        self.calls_per_minute = calls_per_minute
        self.tick_s = tick_s
        self.clock = clock
        self.last_polled: dict[tuple[str, str], float] = {}
        self.last_presence: dict[tuple[str, str], str] = {}
        self.paused_until: dict[str, float] = {}

    async def run_once(self) -> int:
        """One tick: poll who is due; return how many agents were marked seen."""
        now = self.clock()
        plan = plan_polls(
            await watched_agents(self.svc.db), self.last_polled, self.paused_until, now,
            interval_s=self.interval_s, calls_per_minute=self.calls_per_minute, tick_s=self.tick_s,
        )
        marked = 0
        for w in plan:
            if self.paused_until.get(w.team_id, 0.0) > now:
                continue  # a 429 earlier in this tick paused the workspace
            self.last_polled[w.key] = now
            try:
                client = await self.clients.for_team(w.team_id, outbox=True)
                presence = (await client.users_getPresence(user=w.user_id)).get("presence")
            except SlackApiError as exc:
                if exc.response is not None and exc.response.status_code == 429:
                    pause = retry_after_s(exc.response.headers)
                    self.paused_until[w.team_id] = now + max(pause, 1.0)
                    log.warning("Slack presence polling paused %g s for workspace %s (rate limited)", pause, w.team_id)
                    self.last_polled.pop(w.key, None)  # ask about this agent first once resumed
                else:
                    log.warning("users.getPresence failed for %s: %s", w.user_id, exc.response.get("error") if exc.response else exc)
                continue
            except NoInstallation:
                continue
            except Exception as exc:  # network trouble: the next tick tries again
                log.warning("users.getPresence failed for %s: %s", w.user_id, exc)
                continue
            self.last_presence[w.key] = str(presence)
            if presence == "active":
                await self.svc.chat.agent_seen(w.agent_id)
                marked += 1
        return marked

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("Slack presence poll failed; will retry")
            await wait_for_wake(stop, self.tick_s)
