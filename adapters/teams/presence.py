"""Microsoft Graph presence keeps on-duty agents seen while they are Available or Busy in Teams.

Teams sends bots no presence events, so the worker polls
``POST /communications/getPresencesByUserId`` (application permission
``Presence.Read.All``, admin consent) with the Entra object ids of on-duty
agents, at most 650 per request, every ``interval_s``. Available and Busy
mark the agent seen; anything else lets their session run out, so a team
that leaves Teams goes offline by itself when the session timeout passes.
A 429 pauses polling for Retry-After; other failures are logged and retried
on the next tick, never crashing the worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import select

from core.db import Database
from core.models import Agent, AgentIdentity
from core.services import Services
from core.wakeups import wait_for_wake

from adapters.teams.auth import ClientCredentials
from adapters.teams.config import GRAPH_SCOPE
from adapters.teams.errors import TokenError, retry_after_s

log = logging.getLogger(__name__)
PLATFORM = "teams"
BATCH = 650  # getPresencesByUserId takes at most 650 ids
PRESENT = frozenset({"Available", "Busy"})  # the *Idle variants mean away from the keyboard
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TIMEOUT_S = 20


@dataclass(frozen=True)
class Watched:
    agent_id: int
    object_id: str  # the agent's Entra object id


def batches(ids: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    chunk: list[str] = []
    for i in dict.fromkeys(ids):  # each id once, in order
        chunk.append(i)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def is_present(availability: str | None) -> bool:
    """Available or Busy (in a call or meeting) counts as here; Away, DoNotDisturb, Offline do not."""
    return availability in PRESENT


def present_agents(watched: Iterable[Watched], presences: Mapping[str, str | None]) -> set[int]:
    """Agents at least one of whose Teams accounts is present (ids compared case-insensitively)."""
    by_id = {k.lower(): v for k, v in presences.items()}
    return {w.agent_id for w in watched if is_present(by_id.get(w.object_id.lower()))}


async def watched_agents(db: Database) -> list[Watched]:
    """On-duty agents with a Teams identity whose user id is an Entra object id."""
    query = (
        select(AgentIdentity.agent_id, AgentIdentity.user_id)
        .join(Agent, Agent.id == AgentIdentity.agent_id)
        .where(AgentIdentity.platform == PLATFORM, Agent.on_duty.is_(True))
        .order_by(AgentIdentity.id)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [Watched(int(agent_id), user_id) for agent_id, user_id in rows if _GUID.match(user_id)]


class GraphError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"Graph answered {status}: {message}")
        self.status = status
        self.retry_after = retry_after


class GraphPresence:
    """The Graph call, with an app-only token."""

    def __init__(self, graph_url: str, credentials: ClientCredentials, session: Callable[[], aiohttp.ClientSession]) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.credentials = credentials
        self._session = session

    async def fetch(self, object_ids: list[str]) -> dict[str, str | None]:
        """Availability by object id for up to 650 ids."""
        token = await self.credentials.token(GRAPH_SCOPE)
        url = f"{self.graph_url}/communications/getPresencesByUserId"
        async with self._session().post(
            url, json={"ids": object_ids}, headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as resp:
            body: Any = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status != 200:
                error = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(body.get("error"), dict) else ""
                raise GraphError(resp.status, str(error or resp.reason)[:300], retry_after_s(resp.headers))
        return {str(p.get("id")): p.get("availability") for p in (body or {}).get("value", []) if isinstance(p, dict)}


class PresencePoller:
    def __init__(self, svc: Services, graph: GraphPresence, *, interval_s: float = 30.0) -> None:
        self.svc = svc
        self.graph = graph
        self.interval_s = interval_s

    async def poll_once(self) -> float | None:
        """One round over every on-duty agent; returns a pause Graph asked for, if any."""
        watched = await watched_agents(self.svc.db)
        if not watched:
            return None
        presences: dict[str, str | None] = {}
        for chunk in batches(w.object_id for w in watched):
            try:
                presences.update(await self.graph.fetch(chunk))
            except GraphError as exc:
                if exc.status == 429:
                    log.warning("Graph presence throttled; pausing %s s", exc.retry_after)
                    return exc.retry_after if exc.retry_after is not None else self.interval_s
                log.warning("Graph presence failed: %s", exc)
                break
        for agent_id in sorted(present_agents(watched, presences)):
            await self.svc.chat.agent_seen(agent_id)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; failures are logged and retried on the next tick."""
        while not stop.is_set():
            pause: float | None = None
            try:
                pause = await self.poll_once()
            except TokenError as exc:
                log.error("Graph presence: %s (check TEAMS_APP_ID, TEAMS_APP_PASSWORD, TEAMS_TENANT_ID)", exc)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.warning("Graph presence unreachable: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("Graph presence poll failed")
            await wait_for_wake(stop, max(self.interval_s, pause or 0.0))
