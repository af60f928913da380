"""Teams credentials both ways: inbound Bot Framework JWTs, outbound client-credentials tokens.

Tokens are signed with a key made here; the SDK's validator runs for real,
with only its JWKS download pointed at that key.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.core.authorization import AuthenticationConstants
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator
from sqlalchemy import func, select

from core.bindings import bind_channel, link_thread
from core.conversations import VisitorContext
from core.dispatch import Dispatcher
from core.models import Message, OutboxItem
from core.services import Services
from core.widgets import create_widget
from adapters.teams.adapter import TeamsAdapter
from bot.app import build_app
from bot.settings import Settings
from bot.wiring import build_teams
from tests.fakes.bot_connector import CHANNEL, TENANT, FakeBotConnector, TeamsUser, channel_message

APP_ID = "3f9b8a41-5c2d-4e6f-8a7b-9c0d1e2f3a4b"
MICROSOFT_SERVICE_URL = "https://smba.trafficmanager.net/amer/"
ANA = TeamsUser("Ana Lima", "6f1d2c3b-1111-4a5b-9c8d-0123456789ab", "ana@acme.example")
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def bot_framework_token(*, audience: str = APP_ID, key: Any = SIGNING_KEY, service_url: str = MICROSOFT_SERVICE_URL) -> str:
    now = int(time.time())
    claims = {
        "iss": AuthenticationConstants.AGENTS_SDK_TOKEN_ISSUER,
        "aud": audience,
        "serviceurl": service_url,
        "nbf": now - 10,
        "exp": now + 3600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "deskbell-test"})


@pytest.fixture(autouse=True)
def local_jwks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Serve our public key where the validator would download Bot Framework's keys."""
    asked: list[str] = []
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))

    async def signing_key(jwks_uri: str, header: dict[str, Any]) -> jwt.PyJWK:
        asked.append(jwks_uri)
        return jwt.PyJWK({**public, "kid": header["kid"], "alg": "RS256"})

    monkeypatch.setattr(JwtTokenValidator._jwk_client_manager, "get_signing_key", signing_key)
    return asked


@pytest.fixture
async def fake(aiohttp_server) -> FakeBotConnector:  # type: ignore[no-untyped-def]
    connector = FakeBotConnector()
    server = await aiohttp_server(connector.app)
    connector.service_url = str(server.make_url("/amer/"))  # type: ignore[attr-defined]
    connector.token_url = str(server.make_url(f"/{TENANT}/oauth2/v2.0/token"))  # type: ignore[attr-defined]
    return connector


@pytest.fixture
def teams(services: Services, fake: FakeBotConnector) -> TeamsAdapter:
    settings = Settings(
        teams_app_id=APP_ID, teams_app_password="s3cret~value", teams_tenant_id=TENANT, teams_token_url=fake.token_url  # type: ignore[attr-defined]
    )
    adapter = build_teams(services, settings)
    assert adapter is not None
    return adapter


@pytest.fixture
async def client(aiohttp_client, services: Services, teams: TeamsAdapter):  # type: ignore[no-untyped-def]
    return await aiohttp_client(build_app(services, teams=teams))


async def agent_lines(services: Services) -> int:
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(Message).where(Message.sender == "agent"))).scalar_one())


async def linked_chat(services: Services) -> tuple[int, str]:
    """A visitor's conversation already relayed into a reply chain (as the relay leaves it)."""
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        binding = await bind_channel(
            session, widget.id, "teams", workspace_id=TENANT, channel_id=CHANNEL,
            config={"service_url": MICROSOFT_SERVICE_URL, "tenant_id": TENANT, "bot_id": "28:bot"},
        )
        binding_id = binding.id
    conv, _, _ = await services.chat.visitor_message(widget, "v1", "hello?", client_id="c1", context=VisitorContext())
    chain = f"{CHANNEL};messageid=1700000000001"
    async with services.db.write() as session:
        await link_thread(session, conv.id, binding_id, chain, "1700000000001")
    return conv.id, chain


async def test_without_a_token_activities_are_refused_when_an_app_id_is_set(client, services):
    _, chain = await linked_chat(services)
    resp = await client.post("/api/messages", json=channel_message(MICROSOFT_SERVICE_URL, ANA, "hi", thread=chain))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert await agent_lines(services) == 0


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: bot_framework_token(key=OTHER_KEY), id="signed-by-someone-else"),
        pytest.param(lambda: bot_framework_token(audience="a-different-app"), id="for-another-app"),
        pytest.param(lambda: "not-a-jwt", id="garbage"),
    ],
)
async def test_tokens_that_are_not_for_us_are_refused(client, services, token):
    _, chain = await linked_chat(services)
    activity = channel_message(MICROSOFT_SERVICE_URL, ANA, "hi", thread=chain)
    resp = await client.post("/api/messages", json=activity, headers={"Authorization": f"Bearer {token()}"})
    assert resp.status == 401
    assert await agent_lines(services) == 0


async def test_a_valid_bot_framework_token_lets_the_reply_through(client, services, fake, local_jwks):
    conversation_id, chain = await linked_chat(services)
    fake.members[ANA.id] = ANA.member()
    activity = channel_message(MICROSOFT_SERVICE_URL, ANA, "Hi, how can I help?", thread=chain)
    resp = await client.post("/api/messages", json=activity, headers={"Authorization": f"Bearer {bot_framework_token()}"})
    assert resp.status == 202, await resp.text()
    assert local_jwks == [AuthenticationConstants.PUBLIC_ABS_JWKS_URL]  # Bot Framework's keys, not a tenant's
    async with services.db.read() as session:
        line = (await session.execute(select(Message).where(Message.sender == "agent"))).scalar_one()
    assert (line.conversation_id, line.text, line.author) == (conversation_id, "Hi, how can I help?", "Ana Lima")


async def test_a_service_url_outside_microsoft_is_refused(client, services):
    """With auth on, replies never go to a host an activity names unless it is Microsoft's."""
    _, chain = await linked_chat(services)
    evil = "https://evil.example/amer/"
    activity = channel_message(evil, ANA, "hi", thread=chain)
    resp = await client.post(
        "/api/messages", json=activity, headers={"Authorization": f"Bearer {bot_framework_token(service_url=evil)}"}
    )
    assert resp.status == 401
    assert await agent_lines(services) == 0


async def test_outbound_calls_carry_the_bots_token_fetched_once(services, teams, fake):
    fake.require_auth = True
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await bind_channel(
            session, widget.id, "teams", workspace_id=TENANT, channel_id=CHANNEL,
            config={"service_url": fake.service_url, "tenant_id": TENANT, "bot_id": "28:bot"},  # type: ignore[attr-defined]
        )
    dispatcher = Dispatcher(services.db, services.bus)
    teams.register_outbox(dispatcher)
    await services.chat.visitor_message(widget, "v1", "hello?", client_id="c1")
    await services.chat.visitor_message(widget, "v1", "anyone?", client_id="c2")
    while await dispatcher.run_once():
        pass
    assert [c.kind for c in fake.calls] == ["token", "create", "send"]
    [token_call] = fake.of_kind("token")
    assert token_call.body["client_id"] == APP_ID and token_call.body["scope"] == "https://api.botframework.com/.default"
    assert all(c.authorization == "Bearer token-1" for c in fake.calls if c.kind != "token")


async def test_a_wrong_app_password_keeps_deliveries_waiting_and_says_why(services, teams, fake):
    fake.require_auth = True
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await bind_channel(
            session, widget.id, "teams", workspace_id=TENANT, channel_id=CHANNEL,
            config={"service_url": fake.service_url, "tenant_id": TENANT},  # type: ignore[attr-defined]
        )
    teams.connections.provider.credentials.client_secret = ""  # what Entra answers to a wrong secret
    dispatcher = Dispatcher(services.db, services.bus)
    teams.register_outbox(dispatcher)
    await services.chat.visitor_message(widget, "v1", "hello?", client_id="c1")
    assert await dispatcher.run_once() == 1
    async with services.db.read() as session:
        row = (await session.execute(select(OutboxItem))).scalar_one()
    assert row.status == "pending" and "could not get a Teams token" in (row.last_error or "")
    assert fake.of_kind("create") == []
