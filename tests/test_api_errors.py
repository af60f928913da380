"""Every failure under the API answers JSON: unknown routes, wrong methods, bad bodies."""

from __future__ import annotations

import json

import pytest

from tests.test_api_helpers import add_offline_message, api, api_key, widget  # noqa: F401

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PUT", "/api/v1/offlinemessages", {"GET"}),
        ("POST", "/api/v1/offlinemessages/1", {"GET", "PATCH", "DELETE"}),
        ("POST", "/offlinemessages", {"GET"}),
        ("DELETE", "/api/v1/widgets", {"GET", "POST"}),
        ("POST", "/api/v1/widgets/1/status", {"GET"}),
        ("DELETE", "/api/v1/conversations/1/messages", {"GET"}),
    ],
)
async def test_a_wrong_method_is_a_json_405_listing_the_allowed_ones(api, method, path, allowed):
    reply = await api.call(method, path, json={})
    assert reply.status == 405
    assert reply.body["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/widgets/1/nothing", "/offlinemessages/1/extra", "/api/v2/widgets"])
async def test_an_unknown_route_is_a_json_404(api, path):
    error = await api.error("GET", path, 404)
    assert error["code"] == "not_found" and path in error["message"]


async def test_an_oversized_body_is_refused_before_it_is_parsed(api, widget):
    huge = json.dumps({"name": "x" * (70 * 1024)})
    error = await api.error("PATCH", f"/api/v1/widgets/{widget.id}", 413, data=huge, headers=JSON)
    assert error["code"] == "too_large"


async def test_an_oversized_chunked_body_is_refused_too(api, widget):
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    error = await api.error("POST", "/api/v1/widgets", 413, data=chunks(), headers=JSON)
    assert error["code"] == "too_large"


@pytest.mark.parametrize("raw", ['{"name": "Shop"', "", "{'name': 'Shop'}", "\xff"])
async def test_malformed_json_is_a_400(api, raw):
    error = await api.error("POST", "/api/v1/widgets", 400, data=raw.encode("latin-1"), headers=JSON)
    assert error["code"] == "bad_json"


async def test_a_body_that_is_not_json_typed_is_a_415(api):
    error = await api.error("POST", "/api/v1/agents", 415, data="name=Ana", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert error["code"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [[{"status": "handled"}], "handled", 3, None])
async def test_a_body_that_is_not_an_object_is_a_422(api, services, widget, body):
    row = await add_offline_message(services, widget)
    error = await api.error("PATCH", f"/api/v1/offlinemessages/{row.id}", 422, data=json.dumps(body), headers=JSON)
    assert error["code"] == "validation_failed"


async def test_an_id_too_large_for_the_database_is_simply_not_found(api):
    for path in ("/api/v1/widgets/", "/api/v1/agents/", "/api/v1/conversations/", "/api/v1/offlinemessages/"):
        assert (await api.error("GET", path + "9" * 30, 404))["code"] == "not_found"
