"""Pushover: pushes reach agents who are on duty but away from the screen (or
pinned available), through a fake speaking the Pushover messages API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from core.availability import AgentState
from core.conversations import VisitorContext
from core.models import Agent
from core.pushover import set_user_key, wants_push
from tests.fakes.pushover import TOKEN, FakePushover
from tests.test_api_helpers import api, api_key  # noqa: F401
from tests.test_deliveries_helpers import Clock, add_agent, add_widget, attempts, dispatcher_for, drain, outbox, submit_offline

ANA_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
BO_KEY = "gznej3rKEVAvPUxu9vvNnqpmZpokzF"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
async def pushover():
    fake = FakePushover(users={ANA_KEY, BO_KEY})
    await fake.start()
    yield fake
    await fake.close()


def _env(fake: FakePushover) -> dict[str, str]:
    return {"PUSHOVER_TOKEN": TOKEN, "PUSHOVER_API_URL": fake.base_url}


async def _seen(services, agent_id: int, at: datetime | None) -> None:  # type: ignore[no-untyped-def]
    async with services.db.write() as session:
        await session.execute(update(Agent).where(Agent.id == agent_id).values(last_seen_at=at))


@pytest.mark.parametrize(
    ("on_duty", "stay", "seen_ago_s", "serves", "pushed"),
    [
        (True, True, 10, None, True),  # pinned available: a push is how they are reached
        (True, False, 3600, None, True),  # on duty, session lapsed: off-screen
        (True, False, None, None, True),  # on duty, never seen
        (True, False, 10, None, False),  # at the screen: the channel is enough
        (False, True, 3600, None, False),  # off duty: not disturbed
        (True, True, 10, frozenset({99}), False),  # answers another widget
        (True, True, 10, frozenset({1}), True),
    ],
)
def test_who_gets_a_push(on_duty, stay, seen_ago_s, serves, pushed):  # type: ignore[no-untyped-def]
    seen = None if seen_ago_s is None else NOW - timedelta(seconds=seen_ago_s)
    assert wants_push(AgentState(1, on_duty, stay, seen, serves), 1, NOW, 900) is pushed


async def test_an_offline_message_pushes_the_agents_who_are_away(client, api, services, pushover):
    widget = await add_widget(services)
    ana = await add_agent(services, "ana@shop.example", on_duty=True)
    bo = await add_agent(services, "bo@shop.example", on_duty=True)
    cy = await add_agent(services, "cy@shop.example", on_duty=True)
    await api.put(f"/api/v1/agents/{ana.id}/pushover", {"user_key": ANA_KEY})
    await api.put(f"/api/v1/agents/{bo.id}/pushover", {"user_key": BO_KEY})
    await _seen(services, ana.id, datetime.now(timezone.utc) - timedelta(hours=1))  # away
    await _seen(services, bo.id, datetime.now(timezone.utc))  # at the screen
    await _seen(services, cy.id, None)  # away but no key
    message_id = await submit_offline(client, widget)
    [row] = await outbox(services.db, "pushover.")
    assert (row.payload["agent_id"], row.ref_type, row.ref_id) == (ana.id, "offline_message", message_id)

    await drain(dispatcher_for(services, Clock(), **_env(pushover)))
    [push] = pushover.pushes
    assert push["token"] == TOKEN and push["user"] == ANA_KEY
    assert push["title"] == "Offline message on Shop"
    assert push["message"] == "Rita Jones: Please call me back"
    assert push["url"].endswith(f"/console#offline/{message_id}")
    [attempt] = await attempts(services.db, row.id)
    assert attempt.ok and attempt.status_code == 200


async def test_a_new_chat_pushes_a_pinned_agent(services, pushover):
    widget = await add_widget(services)
    ana = await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    async with services.db.write() as session:
        await set_user_key(session, await session.get(Agent, ana.id), ANA_KEY)
    conv, _, _ = await services.chat.visitor_message(
        widget, "v1", "Do you ship to Norway?", client_id="c1", context=VisitorContext(name="Rita")
    )
    await services.chat.visitor_message(widget, "v1", "Hello?", client_id="c2")  # not a new chat
    await drain(dispatcher_for(services, Clock(), **_env(pushover)))
    [push] = pushover.pushes
    assert (push["title"], push["message"]) == ("New chat on Shop", "Rita: Do you ship to Norway?")
    assert push["url"].endswith(f"/console#conversation/{conv.id}")


async def test_an_invalid_user_key_fails_for_good_and_server_errors_are_retried(client, api, services, pushover):
    widget = await add_widget(services)
    ana = await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    await api.put(f"/api/v1/agents/{ana.id}/pushover", {"user_key": "x" * 30})  # well-formed, unknown to Pushover
    pushover.fail_with = [500]
    await submit_offline(client, widget)
    clock = Clock()
    dispatcher = dispatcher_for(services, clock, **_env(pushover))
    await drain(dispatcher)
    [row] = await outbox(services.db, "pushover.")
    assert row.status == "pending" and "HTTP 500" in (row.last_error or "")
    clock.advance(seconds=6)
    await drain(dispatcher)
    [row] = await outbox(services.db, "pushover.")
    assert row.status == "dead" and "HTTP 400" in (row.last_error or "") and "user" in (row.last_error or "")


async def test_the_pushover_key_is_set_read_and_removed_through_the_api(api, services):
    ana = await add_agent(services, "ana@shop.example")
    assert await api.get(f"/api/v1/agents/{ana.id}/pushover") == {"agent_id": ana.id, "configured": False, "user_key_hint": None}
    error = await api.error("PUT", f"/api/v1/agents/{ana.id}/pushover", 422, json={"user_key": "short"})
    assert "30-character" in error["fields"]["user_key"]
    body = await api.put(f"/api/v1/agents/{ana.id}/pushover", {"user_key": ANA_KEY})
    assert body == {"agent_id": ana.id, "configured": True, "user_key_hint": ANA_KEY[-4:]}
    await api.delete(f"/api/v1/agents/{ana.id}/pushover")
    assert (await api.get(f"/api/v1/agents/{ana.id}/pushover"))["configured"] is False
    await api.error("GET", "/api/v1/agents/999/pushover", 404)


async def test_without_a_pushover_token_pushes_wait(client, api, services):
    widget = await add_widget(services)
    ana = await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    await api.put(f"/api/v1/agents/{ana.id}/pushover", {"user_key": ANA_KEY})
    await submit_offline(client, widget)
    await drain(dispatcher_for(services, Clock()))
    [row] = await outbox(services.db, "pushover.")
    assert (row.status, row.attempts) == ("pending", 0)
