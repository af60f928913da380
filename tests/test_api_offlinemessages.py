"""Offline messages over the API: listing with filters and cursors, marking handled, deleting."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from tests.test_api_helpers import add_offline_message, add_widget, anonymous, api, api_key, widget  # noqa: F401

V1 = "/api/v1/offlinemessages"


async def test_listing_offline_messages_pages_with_a_cursor(api, services, widget):
    stored = [(await add_offline_message(services, widget, n)).id for n in range(7)]
    pages = await api.all_pages(V1, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [item["id"] for p in pages for item in p]
    assert ids == sorted(stored, reverse=True)  # newest first, none twice, none missing


async def test_a_page_that_fits_has_no_next_cursor(api, services, widget):
    await add_offline_message(services, widget)
    body = await api.get(V1)
    assert body["next_cursor"] is None and len(body["items"]) == 1
    assert body["items"][0] == {
        "id": body["items"][0]["id"],
        "widget_id": widget.id,
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "message": "Question number 1",
        "page_url": None,
        "status": "new",
        "created_at": body["items"][0]["created_at"],
        "handled_at": None,
    }


async def test_an_empty_list_is_still_a_list(api):
    assert await api.get(V1) == {"items": [], "next_cursor": None}


async def test_a_message_sent_through_the_widget_form_shows_up_in_the_api(api, client, widget):
    resp = await client.post(
        f"/widget/{widget.key}/offline-messages",
        json={"name": "Rita", "email": "rita@example.com", "message": "Call me back", "page_url": "https://shop.example/a"},
    )
    assert resp.status == 201
    sent = await resp.json()
    got = await api.get(f"{V1}/{sent['id']}")
    assert got["email"] == "rita@example.com" and got["page_url"] == "https://shop.example/a"
    assert got["status"] == "new"


async def test_filtering_by_widget_accepts_its_id_or_its_key(api, services, widget):
    other = await add_widget(services, "Blog")
    mine = await add_offline_message(services, widget, 1)
    await add_offline_message(services, other, 2)
    for ref in (str(widget.id), widget.key):
        body = await api.get(f"{V1}?widget={ref}")
        assert [m["id"] for m in body["items"]] == [mine.id]


async def test_filtering_by_an_unknown_widget_names_the_parameter(api):
    for ref in ("999999", "nope", "99999999999999999999999"):
        error = await api.error("GET", f"{V1}?widget={ref}", 422)
        assert error["code"] == "validation_failed" and set(error["fields"]) == {"widget"}


async def test_filtering_by_status(api, services, widget):
    first = await add_offline_message(services, widget, 1)
    second = await add_offline_message(services, widget, 2)
    await api.patch(f"{V1}/{first.id}", {"status": "handled"})
    assert [m["id"] for m in (await api.get(f"{V1}?status=handled"))["items"]] == [first.id]
    assert [m["id"] for m in (await api.get(f"{V1}?status=new"))["items"]] == [second.id]
    error = await api.error("GET", f"{V1}?status=done", 422)
    assert set(error["fields"]) == {"status"}


async def test_filtering_by_since_takes_an_instant_with_offset(api, services, widget):
    day = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
    old = await add_offline_message(services, widget, 1, created_at=day - timedelta(days=2))
    new = await add_offline_message(services, widget, 2, created_at=day)
    for since in ("2025-03-10T00:00:00Z", quote("2025-03-10T02:00:00+02:00"), "2025-03-10T02:00:00+02:00"):
        # The last one is sent unencoded: its "+" arrives as a space and must still work.
        body = await api.get(f"{V1}?since={since}")
        assert [m["id"] for m in body["items"]] == [new.id], since
    assert [m["id"] for m in (await api.get(f"{V1}?since=2025-03-01T00:00:00Z"))["items"]] == [new.id, old.id]


@pytest.mark.parametrize("since", ["yesterday", "2025-03-10T00:00:00", "2025-13-01T00:00:00Z", ""])
async def test_a_bad_since_is_refused_naming_since(api, since):
    error = await api.error("GET", f"{V1}?since={since}", 422)
    assert set(error["fields"]) == {"since"}


@pytest.mark.parametrize(
    "query,field",
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"), ("limit=%C2%B2", "limit"), ("cursor=garbage!", "cursor")],
)
async def test_bad_paging_parameters_are_named(api, query, field):
    error = await api.error("GET", f"{V1}?{query}", 422)
    assert set(error["fields"]) == {field}


async def test_filters_and_cursor_work_together(api, services, widget):
    other = await add_widget(services, "Blog")
    mine = []
    for n in range(5):
        mine.append((await add_offline_message(services, widget, n)).id)
        await add_offline_message(services, other, n + 100)
    pages = await api.all_pages(f"{V1}?widget={widget.key}&status=new", limit=2)
    assert [m["id"] for p in pages for m in p] == sorted(mine, reverse=True)


async def test_marking_a_message_handled_and_new_again(api, services, widget):
    row = await add_offline_message(services, widget)
    handled = await api.patch(f"{V1}/{row.id}", {"status": "handled"})
    assert handled["status"] == "handled" and handled["handled_at"] is not None
    assert (await api.get(f"{V1}/{row.id}"))["status"] == "handled"
    twice = await api.patch(f"{V1}/{row.id}", {"status": "handled"})
    assert twice["handled_at"] == handled["handled_at"]  # re-marking keeps when it was handled
    again = await api.patch(f"{V1}/{row.id}", {"status": "new"})
    assert again["status"] == "new" and again["handled_at"] is None


@pytest.mark.parametrize(
    "body,field",
    [({"status": "done"}, "status"), ({}, "status"), ({"status": "handled", "message": "x"}, "message")],
)
async def test_only_a_valid_status_may_be_patched(api, services, widget, body, field):
    row = await add_offline_message(services, widget)
    error = await api.error("PATCH", f"{V1}/{row.id}", 422, json=body)
    assert field in error["fields"]
    assert (await api.get(f"{V1}/{row.id}"))["status"] == "new"


async def test_deleting_a_message(api, services, widget):
    row = await add_offline_message(services, widget)
    await api.delete(f"{V1}/{row.id}")
    assert (await api.error("GET", f"{V1}/{row.id}", 404))["code"] == "not_found"
    await api.error("DELETE", f"{V1}/{row.id}", 404)


@pytest.mark.parametrize("method,body", [("GET", None), ("PATCH", {"status": "handled"}), ("DELETE", None)])
async def test_unknown_ids_are_not_found(api, method, body):
    for bad in ("424242", "abc", "99999999999999999999999"):
        error = await api.error(method, f"{V1}/{bad}", 404, json=body)
        assert error["code"] == "not_found"


async def test_the_root_path_answers_the_same_four_operations_for_compatibility(api, anonymous, services, widget):
    rows = [await add_offline_message(services, widget, n) for n in range(3)]
    listed = await api.get("/offlinemessages?status=new&limit=2")
    assert listed == await api.get(f"{V1}?status=new&limit=2")
    assert len(listed["items"]) == 2 and listed["next_cursor"]
    rest = await api.get(f"/offlinemessages?status=new&limit=2&cursor={listed['next_cursor']}")
    assert [m["id"] for m in rest["items"]] == [rows[0].id]
    assert (await api.get(f"/offlinemessages/{rows[1].id}"))["id"] == rows[1].id
    assert (await api.patch(f"/offlinemessages/{rows[1].id}", {"status": "handled"}))["status"] == "handled"
    await api.delete(f"/offlinemessages/{rows[2].id}")
    await api.error("GET", f"{V1}/{rows[2].id}", 404)
    assert (await anonymous.call("GET", "/offlinemessages")).status == 401
