"""Conversations and transcripts over the API: filters, seq order, notes included, paging."""

from __future__ import annotations

import pytest

from core.conversations import VisitorContext
from core.services import Services
from tests.test_api_helpers import add_agent, add_widget, api, api_key, widget  # noqa: F401

V1 = "/api/v1/conversations"


async def _conversation(services: Services, widget, visitor: str, *lines: str) -> int:  # type: ignore[no-untyped-def]
    conv_id = 0
    for n, line in enumerate(lines):
        conv, _, _ = await services.chat.visitor_message(
            widget, visitor, line, client_id=f"{visitor}-{n}",
            context=VisitorContext(page_url="https://shop.example/pricing", name="Rita"),
        )
        conv_id = conv.id
    return conv_id


async def test_listing_conversations_newest_first_with_filters(api, services, widget):
    blog = await add_widget(services, "Blog")
    first = await _conversation(services, widget, "v1", "Hello")
    second = await _conversation(services, widget, "v2", "Hi there")
    elsewhere = await _conversation(services, blog, "v3", "Anyone?")
    await services.chat.close(first)

    everything = await api.get(V1)
    assert [c["id"] for c in everything["items"]] == [elsewhere, second, first]
    assert [c["id"] for c in (await api.get(f"{V1}?widget={widget.key}"))["items"]] == [second, first]
    assert [c["id"] for c in (await api.get(f"{V1}?widget={blog.id}&status=open"))["items"]] == [elsewhere]
    closed = (await api.get(f"{V1}?status=closed"))["items"]
    assert [c["id"] for c in closed] == [first] and closed[0]["closed_at"] is not None
    error = await api.error("GET", f"{V1}?status=archived", 422)
    assert set(error["fields"]) == {"status"}
    error = await api.error("GET", f"{V1}?widget=unknown-key", 422)
    assert set(error["fields"]) == {"widget"}


async def test_listing_conversations_pages_with_a_cursor(api, services, widget):
    made = [await _conversation(services, widget, f"visitor-{n}", "hello") for n in range(5)]
    pages = await api.all_pages(V1, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c["id"] for p in pages for c in p] == sorted(made, reverse=True)


async def test_getting_a_conversation(api, services, widget):
    conv_id = await _conversation(services, widget, "v1", "Hello", "Still there?")
    conv = await api.get(f"{V1}/{conv_id}")
    assert conv["widget_id"] == widget.id and conv["visitor_name"] == "Rita"
    assert conv["page_url"] == "https://shop.example/pricing"
    assert conv["status"] == "open" and conv["last_seq"] == 2 and conv["claimed_by"] is None
    for bad in ("31337", "x1"):
        assert (await api.error("GET", f"{V1}/{bad}", 404))["code"] == "not_found"
        await api.error("GET", f"{V1}/{bad}/messages", 404)


async def test_a_transcript_is_in_seq_order_with_internal_notes_marked(api, services, widget):
    agent = await add_agent(services, "ana@example.com")
    conv_id = await _conversation(services, widget, "v1", "Do you ship to Lisbon?")
    await services.chat.agent_message(conv_id, "note: check the carrier list", agent_id=agent.id)
    await services.chat.agent_message(conv_id, "Yes, in two days.", agent_id=agent.id)
    body = await api.get(f"{V1}/{conv_id}/messages")
    assert body["next_cursor"] is None
    assert [(m["seq"], m["from"], m["internal"]) for m in body["items"]] == [
        (1, "visitor", False),
        (2, "agent", True),
        (3, "agent", False),
    ]
    assert "check the carrier list" in body["items"][1]["text"]
    assert body["items"][2]["author"] == "Ana" and body["items"][2]["agent_id"] == agent.id


async def test_a_transcript_pages_forward_with_after_or_the_cursor(api, services, widget):
    conv_id = await _conversation(services, widget, "v1", *[f"line {n}" for n in range(7)])
    pages = await api.all_pages(f"{V1}/{conv_id}/messages", limit=3)
    assert [[m["seq"] for m in p] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]

    after = await api.get(f"{V1}/{conv_id}/messages?after=5")
    assert [m["seq"] for m in after["items"]] == [6, 7] and after["next_cursor"] is None
    assert (await api.get(f"{V1}/{conv_id}/messages?after=7"))["items"] == []


@pytest.mark.parametrize(
    "query,field",
    [("after=-1", "after"), ("after=two", "after"), ("cursor=nonsense", "cursor"), ("limit=500", "limit")],
)
async def test_bad_transcript_paging_parameters_are_named(api, services, widget, query, field):
    conv_id = await _conversation(services, widget, "v1", "hello")
    error = await api.error("GET", f"{V1}/{conv_id}/messages?{query}", 422)
    assert set(error["fields"]) == {field}


async def test_after_and_cursor_together_are_refused(api, services, widget):
    conv_id = await _conversation(services, widget, "v1", "one", "two", "three")
    first = await api.get(f"{V1}/{conv_id}/messages?limit=1")
    error = await api.error("GET", f"{V1}/{conv_id}/messages?after=1&cursor={first['next_cursor']}", 422)
    assert set(error["fields"]) == {"cursor"}


async def test_a_list_cursor_is_not_accepted_as_a_transcript_cursor(api, services, widget):
    for n in range(3):
        await _conversation(services, widget, f"v{n}", "hello")
    list_cursor = (await api.get(f"{V1}?limit=1"))["next_cursor"]
    conv_id = (await api.get(V1))["items"][0]["id"]
    error = await api.error("GET", f"{V1}/{conv_id}/messages?cursor={list_cursor}", 422)
    assert set(error["fields"]) == {"cursor"}
