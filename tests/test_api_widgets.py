"""Widgets over the API: settings, schedule and status, and live widgets hearing about changes."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from core.services import Services
from tests.conftest import eventually
from tests.test_api_helpers import add_agent, add_widget, api, api_key, widget  # noqa: F401

V1 = "/api/v1/widgets"

WEEKDAYS_9_TO_5_BERLIN = {
    "timezone": "Europe/Berlin",
    "weekly": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    "exceptions": [{"date": "2030-01-01", "closed": True}],
}
MONDAY_NOON_BERLIN = "2030-01-07T12:00:00+01:00"
MONDAY_EVENING_BERLIN = "2030-01-07T20:00:00+01:00"


async def _live_status(client, key: str) -> dict:  # type: ignore[no-untyped-def]
    """What an embedded widget is told right now (the status watcher's view)."""
    resp = await client.get(f"/widget/{key}/config")
    return (await resp.json())["status"]


async def test_creating_a_widget_fills_in_defaults_and_a_public_key(api):
    created = await api.post(V1, {"name": "Shop", "colors": {"primary": "#112233", "text": "#fff"}})
    assert created["name"] == "Shop" and len(created["key"]) >= 10
    assert created["enabled"] is True and created["offline_form"] is True and created["schedule"] is None
    assert created["colors"] == {"primary": "#112233", "text": "#fff"}
    assert await api.get(f"{V1}/{created['id']}") == created


async def test_listing_widgets_pages_newest_first(api, services):
    made = [(await add_widget(services, f"Site {n}")).id for n in range(5)]
    pages = await api.all_pages(V1, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [w["id"] for p in pages for w in p] == sorted(made, reverse=True)


async def test_changing_settings_keeps_the_others(api, widget):
    changed = await api.patch(f"{V1}/{widget.id}", {"online_tab_text": "Talk to us", "notify_emails": ["ops@example.com"]})
    assert changed["online_tab_text"] == "Talk to us" and changed["notify_emails"] == ["ops@example.com"]
    assert changed["name"] == "Shop" and changed["key"] == widget.key
    assert changed["updated_at"] >= changed["created_at"]


@pytest.mark.parametrize(
    "body,fields",
    [
        ({"colors": {"primary": "blue"}}, {"colors"}),
        ({"colors": {"primary": "#12345", "text": "#fff"}}, {"colors"}),
        ({"colors": {"background": "#ffffff"}}, {"colors"}),
        ({"notify_emails": ["not-an-email"]}, {"notify_emails"}),
        ({"colour": "#ffffff"}, {"colour"}),
        ({"key": "mine"}, {"key"}),
        ({"session_timeout_s": 5, "enabled": "yes"}, {"session_timeout_s", "enabled"}),
        ({"allowed_origins": ["https://shop.example/path"]}, {"allowed_origins"}),
        ({"schedule": {"timezone": "Mars/Olympus"}}, {"schedule"}),
    ],
)
async def test_bad_settings_are_refused_naming_every_bad_field(api, widget, body, fields):
    error = await api.error("PATCH", f"{V1}/{widget.id}", 422, json=body)
    assert error["code"] == "validation_failed" and set(error["fields"]) == fields
    assert (await api.get(f"{V1}/{widget.id}"))["colors"] == {"primary": "#2563eb", "text": "#ffffff"}


async def test_a_new_widget_needs_a_name(api):
    error = await api.error("POST", V1, 422, json={"enabled": True})
    assert set(error["fields"]) == {"name"}
    error = await api.error("POST", V1, 422, json=["Shop"])
    assert error["code"] == "validation_failed"


async def test_deleting_a_widget_takes_its_offline_messages_with_it(api, client):
    created = await api.post(V1, {"name": "Temporary"})
    resp = await client.post(
        f"/widget/{created['key']}/offline-messages", json={"email": "a@example.com", "message": "hello"}
    )
    message_id = (await resp.json())["id"]
    await api.delete(f"{V1}/{created['id']}")
    await api.error("GET", f"{V1}/{created['id']}", 404)
    await api.error("GET", f"/api/v1/offlinemessages/{message_id}", 404)
    assert (await client.get(f"/widget/{created['key']}/config")).status == 404


async def test_unknown_widgets_are_not_found_on_every_widget_path(api):
    for method, suffix, body in [
        ("GET", "", None), ("PATCH", "", {"name": "x"}), ("DELETE", "", None),
        ("GET", "/schedule", None), ("PUT", "/schedule", {"timezone": "UTC"}), ("GET", "/status", None),
    ]:
        error = await api.error(method, f"{V1}/987654{suffix}", 404, json=body)
        assert error["code"] == "not_found"


# ---------------------------------------------------------------- schedule


async def test_a_new_widget_has_no_schedule(api, widget):
    reply = await api.call("GET", f"{V1}/{widget.id}/schedule")
    assert reply.status == 200 and reply.body is None


async def test_putting_a_schedule_stores_it_in_normal_form(api, widget):
    stored = await api.put(f"{V1}/{widget.id}/schedule", {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]]}})
    assert stored["weekly"]["mon"] == [["09:00", "17:00"]] and stored["weekly"]["sun"] == []
    assert stored["exceptions"] == []
    assert await api.get(f"{V1}/{widget.id}/schedule") == stored
    assert (await api.get(f"{V1}/{widget.id}"))["schedule"] == stored


@pytest.mark.parametrize(
    "schedule,path",
    [
        ({"timezone": "Europe/Berlin", "weekly": {"mon": [["9:00", "17:00"]]}}, "weekly.mon[0]"),
        ({"timezone": "Europe/Berlin", "weekly": {"funday": []}}, "weekly.funday"),
        ({"timezone": "Nowhere/Special"}, "timezone"),
        ({"weekly": {}}, "timezone"),
        ({"timezone": "UTC", "exceptions": [{"date": "2030-02-30", "closed": True}]}, "exceptions[0].date"),
        ({"timezone": "UTC", "weekly": {"tue": [["10:00", "10:00"]]}}, "weekly.tue[0]"),
        ("always", "schedule"),
    ],
)
async def test_a_bad_schedule_is_refused_naming_the_field_path(api, widget, schedule, path):
    error = await api.error("PUT", f"{V1}/{widget.id}/schedule", 422, json=schedule)
    assert error["message"].startswith(path + ":")
    assert list(error["fields"]) == [path]
    assert (await api.call("GET", f"{V1}/{widget.id}/schedule")).body is None


async def test_putting_null_removes_the_schedule(api, services, widget):
    await add_agent(services, "ana@example.com", on_duty=True, stay_available=True)
    await api.put(f"{V1}/{widget.id}/schedule", WEEKDAYS_9_TO_5_BERLIN)
    closed = await api.get(f"{V1}/{widget.id}/status?at={quote(MONDAY_EVENING_BERLIN)}")
    assert closed["reason"] == "outside_schedule"
    reply = await api.call("PUT", f"{V1}/{widget.id}/schedule", data="null", headers={"Content-Type": "application/json"})
    assert reply.status == 200 and reply.body is None
    assert (await api.get(f"{V1}/{widget.id}/status?at={quote(MONDAY_EVENING_BERLIN)}"))["online"] is True


# ---------------------------------------------------------------- status


async def test_status_says_why_a_widget_is_offline(api, widget):
    status = await api.get(f"{V1}/{widget.id}/status")
    assert status == {
        "online": False,
        "reason": "no_agent_available",
        "mode": "form",
        "next_change_at": None,
        "agents_available": 0,
        "next_open_at": None,
    }


async def test_status_preview_at_an_instant_honours_the_schedule(api, services, widget):
    await add_agent(services, "ana@example.com", on_duty=True, stay_available=True)
    await api.put(f"{V1}/{widget.id}/schedule", WEEKDAYS_9_TO_5_BERLIN)

    open_ = await api.get(f"{V1}/{widget.id}/status?at={quote(MONDAY_NOON_BERLIN)}")
    assert open_["online"] is True and open_["mode"] == "live" and open_["reason"] is None
    assert open_["next_change_at"] == "2030-01-07T16:00:00+00:00"  # 17:00 in Berlin

    closed = await api.get(f"{V1}/{widget.id}/status?at={quote(MONDAY_EVENING_BERLIN)}")
    assert closed["online"] is False and closed["reason"] == "outside_schedule"
    assert closed["agents_available"] == 1  # someone is on duty; the hours decide
    assert closed["next_open_at"] == "2030-01-08T08:00:00+00:00"

    holiday = await api.get(f"{V1}/{widget.id}/status?at=2030-01-01T11:00:00Z")
    assert holiday["reason"] == "outside_schedule"


async def test_status_preview_accepts_an_unencoded_plus_in_the_offset(api, services, widget):
    await api.put(f"{V1}/{widget.id}/schedule", WEEKDAYS_9_TO_5_BERLIN)
    status = await api.get(f"{V1}/{widget.id}/status?at={MONDAY_EVENING_BERLIN}")
    assert status["reason"] == "outside_schedule"


@pytest.mark.parametrize("at", ["tomorrow", "2030-01-07T12:00:00", "2030-01-07"])
async def test_a_bad_preview_instant_is_refused_naming_at(api, widget, at):
    error = await api.error("GET", f"{V1}/{widget.id}/status?at={at}", 422)
    assert set(error["fields"]) == {"at"}


async def test_disabling_a_widget_reaches_live_widgets(api, client, services: Services, widget):
    await add_agent(services, "ana@example.com", on_duty=True, stay_available=True)
    await services.watcher.refresh()
    assert (await _live_status(client, widget.key))["online"] is True
    await api.patch(f"{V1}/{widget.id}", {"enabled": False})
    assert (await api.get(f"{V1}/{widget.id}/status"))["reason"] == "disabled"

    async def flipped() -> bool:
        return (await _live_status(client, widget.key))["reason"] == "disabled"

    await eventually(flipped)


async def test_a_schedule_change_reaches_live_widgets(api, client, services: Services, widget):
    await add_agent(services, "ana@example.com", on_duty=True, stay_available=True)
    await services.watcher.refresh()
    assert (await _live_status(client, widget.key))["online"] is True
    always_closed = {"timezone": "UTC", "exceptions": []}
    await api.put(f"{V1}/{widget.id}/schedule", always_closed)

    async def flipped() -> bool:
        return (await _live_status(client, widget.key))["reason"] == "outside_schedule"

    await eventually(flipped)
