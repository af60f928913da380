"""The OpenAPI document is valid, lists exactly the routes that exist, and real answers match it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from adapters.api.openapi import build_document
from adapters.api.routes import OPERATIONS
from core.conversations import VisitorContext
from tests.test_deliveries_helpers import delivery_calls
from tests.test_knowledge import knowledge_calls
from tests.test_api_helpers import (  # noqa: F401
    CONTRACT,
    add_agent,
    add_offline_message,
    anonymous,
    api,
    api_key,
    widget,
)

API_PREFIXES = ("/api/", "/offlinemessages")


def _registered(app: Any) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(API_PREFIXES) and route.method != "*":
            out.add((route.method, path))
    return out


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


async def test_the_served_document_is_valid_openapi(anonymous):
    doc = (await anonymous.call("GET", "/api/openapi.json")).body
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc == build_document(OPERATIONS)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]
    }
    for name in ("Widget", "Schedule", "WidgetStatus", "Agent", "OfflineMessage", "Conversation", "Message", "Error",
                 "WidgetList", "AgentList", "OfflineMessageList", "ConversationList", "MessageList"):
        assert name in doc["components"]["schemas"], name


async def test_every_api_route_is_documented_and_every_documented_route_exists(client):
    doc = build_document(OPERATIONS)
    assert _registered(client.app) == _documented(doc)
    assert {p for _, p in _registered(client.app) if p.startswith("/api/v1/")} >= {
        "/api/v1/offlinemessages", "/api/v1/offlinemessages/{id}", "/api/v1/widgets", "/api/v1/widgets/{id}",
        "/api/v1/widgets/{id}/schedule", "/api/v1/widgets/{id}/status", "/api/v1/agents", "/api/v1/agents/{id}",
        "/api/v1/conversations", "/api/v1/conversations/{id}", "/api/v1/conversations/{id}/messages",
    }


def test_every_operation_documents_its_errors_and_parameters():
    doc = build_document(OPERATIONS)
    ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)
            if op.get("security") == []:
                continue
            assert "401" in op["responses"], (method, path)
            if "{id}" in path:
                assert "404" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(op["responses"]), (method, path)
            if any(p["in"] == "query" for p in op.get("parameters", [])):
                assert "422" in op["responses"], (method, path)
    assert len(ids) == len(set(ids))


def test_response_schemas_are_closed_so_undocumented_fields_are_caught():
    message = {
        "id": 1, "widget_id": 1, "name": None, "email": "a@example.com", "message": "hi", "page_url": None,
        "status": "new", "created_at": "2025-01-01T00:00:00+00:00", "handled_at": None,
    }
    CONTRACT.schema("OfflineMessage").validate(message)
    with pytest.raises(jsonschema.ValidationError):
        CONTRACT.schema("OfflineMessage").validate({**message, "secret": "leak"})
    with pytest.raises(jsonschema.ValidationError):
        CONTRACT.schema("OfflineMessage").validate({k: v for k, v in message.items() if k != "status"})


async def test_a_real_answer_from_every_operation_matches_the_document(api, services, widget):
    """One successful call per documented operation; ``api`` validates each body against its schema."""
    agent = await add_agent(services, "ana@example.com", on_duty=True)
    conv, _, _ = await services.chat.visitor_message(
        widget, "visitor-1", "Hello", client_id="c1", context=VisitorContext(page_url="https://shop.example/")
    )
    await services.chat.agent_message(conv.id, "note: VIP customer", agent_id=agent.id)
    await services.chat.agent_message(conv.id, "Welcome!", agent_id=agent.id)
    kept, gone, gone_compat = [await add_offline_message(services, widget, n) for n in range(3)]
    doomed_widget = await api.post("/api/v1/widgets", {"name": "Doomed"})
    doomed_agent = await add_agent(services, "bo@example.com")
    schedule = {"timezone": "America/New_York", "weekly": {"mon": [["22:00", "02:00"]]},
                "exceptions": [{"date": "2030-05-01", "hours": [["10:00", "12:00"]]}, {"date": "2030-05-02", "closed": True}]}

    calls: dict[str, tuple[str, str, Any]] = {
        "listOfflineMessages": ("GET", f"/api/v1/offlinemessages?widget={widget.key}&status=new&since=2000-01-01T00:00:00Z&limit=2", None),
        "getOfflineMessage": ("GET", f"/api/v1/offlinemessages/{kept.id}", None),
        "updateOfflineMessage": ("PATCH", f"/api/v1/offlinemessages/{kept.id}", {"status": "handled"}),
        "deleteOfflineMessage": ("DELETE", f"/api/v1/offlinemessages/{gone.id}", None),
        "listOfflineMessagesCompat": ("GET", "/offlinemessages?status=handled", None),
        "getOfflineMessageCompat": ("GET", f"/offlinemessages/{kept.id}", None),
        "updateOfflineMessageCompat": ("PATCH", f"/offlinemessages/{kept.id}", {"status": "new"}),
        "deleteOfflineMessageCompat": ("DELETE", f"/offlinemessages/{gone_compat.id}", None),
        "createWidget": ("POST", "/api/v1/widgets", {"name": "Docs", "allowed_origins": ["https://docs.example"], "schedule": schedule}),
        "listWidgets": ("GET", "/api/v1/widgets?limit=1", None),
        "getWidget": ("GET", f"/api/v1/widgets/{widget.id}", None),
        "updateWidget": ("PATCH", f"/api/v1/widgets/{widget.id}", {"ai_enabled": True, "position": "left"}),
        "deleteWidget": ("DELETE", f"/api/v1/widgets/{doomed_widget['id']}", None),
        "putWidgetSchedule": ("PUT", f"/api/v1/widgets/{widget.id}/schedule", schedule),
        "getWidgetSchedule": ("GET", f"/api/v1/widgets/{widget.id}/schedule", None),
        "getWidgetStatus": ("GET", f"/api/v1/widgets/{widget.id}/status?at=2030-05-01T14:30:00Z", None),
        "listAgents": ("GET", "/api/v1/agents", None),
        "createAgent": ("POST", "/api/v1/agents", {"name": "Cy", "email": "cy@example.com", "widget_ids": [widget.id], "avatar_url": "https://cdn.example/cy.png"}),
        "getAgent": ("GET", f"/api/v1/agents/{agent.id}", None),
        "updateAgent": ("PATCH", f"/api/v1/agents/{agent.id}", {"stay_available": True}),
        "deleteAgent": ("DELETE", f"/api/v1/agents/{doomed_agent.id}", None),
        "listConversations": ("GET", f"/api/v1/conversations?widget={widget.id}&status=open", None),
        "getConversation": ("GET", f"/api/v1/conversations/{conv.id}", None),
        "listConversationMessages": ("GET", f"/api/v1/conversations/{conv.id}/messages?after=0&limit=2", None),
        "getOpenApiDocument": ("GET", "/api/openapi.json", None),
        "exportVisitorData": ("GET", f"/api/v1/privacy/visitor?email={kept.email}", None),
        "eraseVisitorData": ("DELETE", "/api/v1/privacy/visitor?email=nobody@example.com", None),
        "bindWidgetChannel": ("PUT", f"/api/v1/widgets/{widget.id}/channels/slack", {"channel_id": "C1", "workspace_id": "T1"}),
        "listWidgetChannels": ("GET", f"/api/v1/widgets/{widget.id}/channels", None),
        "unbindWidgetChannel": ("DELETE", f"/api/v1/widgets/{widget.id}/channels/slack", None),
    }
    calls.update(await delivery_calls(services, widget, kept, agent))  # webhooks, deliveries, notifications
    calls.update(await knowledge_calls(services, widget))  # knowledge base and assistant settings
    documented = {
        op["operationId"]: (method.upper(), op)
        for item in CONTRACT.document["paths"].values()
        for method, op in item.items()
    }
    assert set(calls) == set(documented), "every documented operation needs a call here"
    for operation_id, (method, path, body) in calls.items():
        reply = await api.call(method, path, json=body)
        success = next(s for s in documented[operation_id][1]["responses"] if s.startswith("2"))
        assert reply.status == int(success), (operation_id, reply.status, reply.body)
        if reply.body is not None and operation_id != "getOpenApiDocument":
            assert reply.body != {} and reply.body != {"items": [], "next_cursor": None}, operation_id
    status = (await api.get(f"/api/v1/widgets/{widget.id}/status?at=2030-05-01T14:30:00Z"))
    assert status["online"] is True  # 10:30 in New York on an exception day with hours


async def test_error_answers_match_the_error_schema(api, anonymous, widget):
    error_schema = CONTRACT.schema("Error")
    replies = [
        await anonymous.call("GET", "/api/v1/widgets"),
        await api.call("GET", "/api/v1/widgets/424242"),
        await api.call("PATCH", f"/api/v1/widgets/{widget.id}", json={"colors": "red", "nope": 1}),
        await api.call("POST", "/api/v1/widgets", data=b"{", headers={"Content-Type": "application/json"}),
        await api.call("GET", "/api/v1/offlinemessages?since=soon"),
        await api.call("PUT", "/api/v1/widgets"),
        await api.call("GET", "/api/v1/missing"),
    ]
    assert [r.status for r in replies] == [401, 404, 422, 400, 422, 405, 404]
    for reply in replies:
        error_schema.validate(reply.body)
