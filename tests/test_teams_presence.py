"""Graph presence: on-duty agents who are Available or Busy in Teams stay seen."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.clock import utcnow
from core.models import Agent, AgentIdentity
from core.services import Services
from adapters.teams.adapter import TeamsAdapter
from adapters.teams.presence import BATCH, Watched, batches, is_present, present_agents
from bot.settings import Settings
from bot.wiring import build_teams, worker_jobs
from tests.fakes.bot_connector import TENANT, FakeBotConnector

APP_ID = "3f9b8a41-5c2d-4e6f-8a7b-9c0d1e2f3a4b"
LONG_AGO = utcnow() - timedelta(hours=2)


def object_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
async def fake(aiohttp_server) -> FakeBotConnector:  # type: ignore[no-untyped-def]
    connector = FakeBotConnector()
    server = await aiohttp_server(connector.app)
    connector.base = str(server.make_url("/")).rstrip("/")  # type: ignore[attr-defined]
    connector.require_auth = True
    return connector


@pytest.fixture
def teams(services: Services, fake: FakeBotConnector) -> TeamsAdapter:
    settings = Settings(
        teams_app_id=APP_ID,
        teams_app_password="s3cret~value",
        teams_tenant_id=TENANT,
        teams_graph_presence=True,
        teams_graph_url=f"{fake.base}/v1.0",  # type: ignore[attr-defined]
        teams_token_url=f"{fake.base}/{TENANT}/oauth2/v2.0/token",  # type: ignore[attr-defined]
    )
    adapter = build_teams(services, settings)
    assert adapter is not None and adapter.presence is not None
    return adapter


async def add_agent(services: Services, n: int, *, on_duty: bool = True, identity: str | None = None) -> int:
    async with services.db.write() as session:
        agent = Agent(name=f"Agent {n}", email=f"agent{n}@acme.example", on_duty=on_duty, stay_available=False, last_seen_at=LONG_AGO)
        session.add(agent)
        await session.flush()
        session.add(AgentIdentity(agent_id=agent.id, platform="teams", workspace_id=TENANT, user_id=identity or object_id(n)))
        return agent.id


async def last_seen(services: Services, agent_id: int):  # type: ignore[no-untyped-def]
    async with services.db.read() as session:
        return (await session.get(Agent, agent_id)).last_seen_at


def test_ids_go_in_batches_of_at_most_650_each_once():
    ids = [object_id(n) for n in range(1400)] + [object_id(3)]
    sizes = [len(b) for b in batches(ids)]
    assert sizes == [650, 650, 100] and BATCH == 650


@pytest.mark.parametrize(
    ("availability", "present"),
    [("Available", True), ("Busy", True), ("BusyIdle", False), ("AvailableIdle", False), ("Away", False), ("BeRightBack", False),
     ("DoNotDisturb", False), ("Offline", False), ("PresenceUnknown", False), (None, False)],
)
def test_available_and_busy_count_as_here(availability, present):
    assert is_present(availability) is present


def test_an_agent_is_present_if_any_of_their_accounts_is():
    watched = [Watched(1, "AAAA-1"), Watched(1, "aaaa-2"), Watched(2, "bbbb-1")]
    assert present_agents(watched, {"aaaa-1": "Away", "AAAA-2": "Available", "bbbb-1": "Offline"}) == {1}


async def test_available_on_duty_agents_are_marked_seen_others_are_not(services, teams, fake):
    ana = await add_agent(services, 1)
    ben = await add_agent(services, 2)
    cleo = await add_agent(services, 3, on_duty=False)
    dev = await add_agent(services, 4, identity="bf:29:no-entra-id")  # never asked about: Graph takes object ids
    fake.presences = {object_id(1): {"availability": "Available"}, object_id(2): {"availability": "Away"},
                      object_id(3): {"availability": "Available"}}
    assert await teams.presence.poll_once() is None
    [call] = fake.of_kind("presence")
    assert call.body == {"ids": [object_id(1), object_id(2)]}
    assert call.authorization == "Bearer token-1"
    [token] = fake.of_kind("token")
    assert token.body["scope"] == "https://graph.microsoft.com/.default" and token.path == f"/{TENANT}/oauth2/v2.0/token"
    assert await last_seen(services, ana) > LONG_AGO
    for other in (ben, cleo, dev):
        assert await last_seen(services, other) == LONG_AGO


async def test_more_than_650_agents_are_asked_about_in_several_requests(services, teams, fake):
    async with services.db.write() as session:
        for n in range(1, 702):
            agent = Agent(name=f"A{n}", email=f"a{n}@acme.example", on_duty=True, stay_available=False)
            session.add(agent)
            await session.flush()
            session.add(AgentIdentity(agent_id=agent.id, platform="teams", workspace_id=TENANT, user_id=object_id(n)))
    fake.presences = {object_id(701): {"availability": "Busy"}}
    await teams.presence.poll_once()
    assert [len(c.body["ids"]) for c in fake.of_kind("presence")] == [650, 51]
    assert len(fake.of_kind("token")) == 1  # the token is cached across batches
    async with services.db.read() as session:
        seen = (await session.execute(select(Agent.name).where(Agent.last_seen_at.is_not(None)))).scalars().all()
    assert seen == ["A701"]


async def test_a_429_from_graph_pauses_polling_for_retry_after(services, teams, fake):
    await add_agent(services, 1)
    fake.fail_next(429, kinds=("presence",), retry_after="120")
    assert await teams.presence.poll_once() == 120


async def test_graph_failures_never_stop_the_poller(services, teams, fake):
    agent = await add_agent(services, 1)
    fake.presences = {object_id(1): {"availability": "Available"}}
    fake.fail_next(500, kinds=("presence",))
    teams.presence.interval_s = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(teams.presence.run(stop))
    try:
        for _ in range(100):
            if await last_seen(services, agent) > LONG_AGO:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert len(fake.of_kind("presence")) >= 2 and await last_seen(services, agent) > LONG_AGO


async def test_the_worker_runs_the_poller_only_when_presence_is_configured(services, teams):
    assert teams.presence.run in worker_jobs(teams=teams)
    plain = build_teams(services, Settings(teams_app_id=APP_ID, teams_app_password="x"))
    assert plain is not None and plain.presence is None and worker_jobs(teams=plain) == []
