"""Agents over the API, and widgets flipping the moment an agent comes or goes."""

from __future__ import annotations

import pytest

from core.services import Services
from tests.conftest import eventually
from tests.test_api_helpers import add_agent, add_widget, api, api_key, widget  # noqa: F401

V1 = "/api/v1/agents"


async def _live_status(client, key: str) -> dict:  # type: ignore[no-untyped-def]
    resp = await client.get(f"/widget/{key}/config")
    return (await resp.json())["status"]


async def test_adding_an_agent(api):
    created = await api.post(V1, {"name": "Ana Lima", "email": "Ana@Example.com"})
    assert created["email"] == "ana@example.com"  # stored lower-case, so duplicates are caught
    assert created["on_duty"] is False and created["available"] is False and created["last_seen_at"] is None
    assert created["widget_ids"] is None and created["avatar_url"] is None
    assert await api.get(f"{V1}/{created['id']}") == created


async def test_an_agent_added_on_duty_with_stay_available_is_available(api):
    created = await api.post(V1, {"name": "Bo", "email": "bo@example.com", "on_duty": True, "stay_available": True})
    assert created["available"] is True


async def test_a_duplicate_email_is_a_conflict(api, services):
    await add_agent(services, "ana@example.com")
    error = await api.error("POST", V1, 409, json={"name": "Other Ana", "email": "ANA@example.com"})
    assert error["code"] == "conflict"
    other = await api.post(V1, {"name": "Bo", "email": "bo@example.com"})
    error = await api.error("PATCH", f"{V1}/{other['id']}", 409, json={"email": "ana@example.com"})
    assert error["code"] == "conflict"


@pytest.mark.parametrize(
    "body,fields",
    [
        ({"name": "Ana", "email": "ana-at-example.com"}, {"email"}),
        ({"name": "Ana"}, {"email"}),
        ({"email": "ana@example.com"}, {"name"}),
        ({"name": "Ana", "email": "ana@example.com", "role": "admin"}, {"role"}),
        ({"name": "Ana", "email": "ana@example.com", "avatar_url": "ftp://x/y.png"}, {"avatar_url"}),
        ({"name": "Ana", "email": "ana@example.com", "widget_ids": ["one"]}, {"widget_ids"}),
        ({"name": "", "email": "nope", "on_duty": "yes"}, {"name", "email", "on_duty"}),
    ],
)
async def test_bad_agent_fields_are_named(api, body, fields):
    error = await api.error("POST", V1, 422, json=body)
    assert error["code"] == "validation_failed" and set(error["fields"]) == fields


async def test_listing_agents_pages_newest_first(api, services):
    made = [(await add_agent(services, f"agent{n}@example.com")).id for n in range(5)]
    pages = await api.all_pages(V1, limit=2)
    assert [a["id"] for p in pages for a in p] == sorted(made, reverse=True)


async def test_changing_an_agents_details(api, services, widget):
    agent = await add_agent(services, "ana@example.com")
    changed = await api.patch(
        f"{V1}/{agent.id}",
        {"name": "Ana L.", "avatar_url": "https://cdn.example/ana.png", "widget_ids": [widget.id, widget.id]},
    )
    assert changed["name"] == "Ana L." and changed["avatar_url"] == "https://cdn.example/ana.png"
    assert changed["widget_ids"] == [widget.id]
    assert (await api.get(f"{V1}/{agent.id}"))["name"] == "Ana L."
    error = await api.error("PATCH", f"{V1}/{agent.id}", 422, json={"available": True})
    assert set(error["fields"]) == {"available"}


async def test_removing_an_agent(api, services):
    agent = await add_agent(services, "ana@example.com")
    await api.delete(f"{V1}/{agent.id}")
    await api.error("GET", f"{V1}/{agent.id}", 404)
    await api.error("PATCH", f"{V1}/{agent.id}", 404, json={"on_duty": True})
    await api.error("DELETE", f"{V1}/{agent.id}", 404)


async def test_putting_an_agent_on_duty_flips_the_widget_online(api, client, services: Services, widget):
    agent = await add_agent(services, "ana@example.com")
    await services.watcher.refresh()
    assert (await api.get(f"/api/v1/widgets/{widget.id}/status"))["reason"] == "no_agent_available"
    assert (await _live_status(client, widget.key))["online"] is False

    on = await api.patch(f"{V1}/{agent.id}", {"on_duty": True})
    assert on["on_duty"] is True and on["available"] is True and on["last_seen_at"] is not None
    status = await api.get(f"/api/v1/widgets/{widget.id}/status")
    assert status["online"] is True and status["agents_available"] == 1
    assert status["next_change_at"] is not None  # the agent's session will lapse

    async def live_is(online: bool):  # type: ignore[no-untyped-def]
        return (await _live_status(client, widget.key))["online"] is online

    await eventually(lambda: live_is(True))

    off = await api.patch(f"{V1}/{agent.id}", {"on_duty": False})
    assert off["available"] is False
    assert (await api.get(f"/api/v1/widgets/{widget.id}/status"))["reason"] == "no_agent_available"
    await eventually(lambda: live_is(False))


async def test_an_agent_limited_to_other_widgets_does_not_bring_this_one_online(api, services, widget):
    blog = await add_widget(services, "Blog")
    await api.post(V1, {"name": "Bo", "email": "bo@example.com", "on_duty": True, "stay_available": True, "widget_ids": [blog.id]})
    assert (await api.get(f"/api/v1/widgets/{widget.id}/status"))["online"] is False
    assert (await api.get(f"/api/v1/widgets/{blog.id}/status"))["online"] is True


async def test_adding_or_removing_an_available_agent_reaches_live_widgets(api, client, services: Services, widget):
    await services.watcher.refresh()
    created = await api.post(V1, {"name": "Bo", "email": "bo@example.com", "on_duty": True, "stay_available": True})

    async def live_is(online: bool):  # type: ignore[no-untyped-def]
        return (await _live_status(client, widget.key))["online"] is online

    await eventually(lambda: live_is(True))
    await api.delete(f"{V1}/{created['id']}")
    await eventually(lambda: live_is(False))
