"""Binding a widget's Slack or Teams channel through the REST API."""

from __future__ import annotations

import pytest

from core.apikeys import create_api_key
from core.services import Services
from core.widgets import create_widget


@pytest.fixture
async def auth(services: Services) -> dict[str, str]:
    async with services.db.write() as session:
        _key, secret = await create_api_key(session, "channels")
    return {"Authorization": f"Bearer {secret}"}


async def test_a_widget_is_bound_listed_rebound_and_unbound(client, services: Services, auth):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    url = f"/api/v1/widgets/{widget.id}/channels"
    put = await client.put(f"{url}/slack", json={"channel_id": "C1", "workspace_id": "T1", "channel_name": "support"}, headers=auth)
    assert put.status == 200
    assert (await put.json())["channel_id"] == "C1"
    again = await client.put(f"{url}/slack", json={"channel_id": "C2", "workspace_id": "T1"}, headers=auth)
    assert (await again.json())["channel_id"] == "C2"  # one channel per platform: rebinding replaces
    teams = await client.put(
        f"{url}/teams",
        json={"channel_id": "19:abc@thread.tacv2", "workspace_id": "tenant-1", "service_url": "https://smba.trafficmanager.net/emea/"},
        headers=auth,
    )
    assert teams.status == 200
    listed = await (await client.get(url, headers=auth)).json()
    assert sorted(b["platform"] for b in listed["items"]) == ["slack", "teams"]
    assert (await client.delete(f"{url}/slack", headers=auth)).status == 204
    assert (await client.delete(f"{url}/slack", headers=auth)).status == 404


async def test_teams_needs_an_https_service_url_and_unknown_platforms_are_404(client, services: Services, auth):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    url = f"/api/v1/widgets/{widget.id}/channels"
    bad = await client.put(f"{url}/teams", json={"channel_id": "19:x", "workspace_id": "t"}, headers=auth)
    assert bad.status == 422 and "service_url" in (await bad.json())["error"]["fields"]
    assert (await client.put(f"{url}/discord", json={"channel_id": "x", "workspace_id": "y"}, headers=auth)).status == 404
