"""Bearer API keys guard /api/v1 and /offlinemessages; the OpenAPI document stays public."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.apikeys import revoke_api_keys_named
from core.clock import utcnow
from core.models import ApiKey
from tests.test_api_helpers import Api, anonymous, api, api_key, new_api_key  # noqa: F401

PROTECTED = ["/api/v1/offlinemessages", "/offlinemessages", "/api/v1/widgets", "/api/v1/agents/1", "/api/v1/nowhere"]


async def _last_used(services, secret: str):  # type: ignore[no-untyped-def]
    async with services.db.read() as session:
        key = (await session.execute(select(ApiKey).where(ApiKey.prefix == secret[:10]))).scalar_one()
    return key.last_used_at


@pytest.mark.parametrize("path", PROTECTED)
async def test_a_request_without_a_key_is_refused_with_a_bearer_challenge(anonymous, path):
    reply = await anonymous.call("GET", path)
    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in reply.body["error"]["message"]
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer dbk_not-a-real-key", "Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 5000])
async def test_a_wrong_key_or_scheme_is_refused(anonymous, header):
    reply = await anonymous.call("GET", "/api/v1/offlinemessages", headers={"Authorization": header})
    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


async def test_a_revoked_key_stops_working_at_once(api, services):
    assert (await api.call("GET", "/api/v1/widgets")).status == 200
    async with services.db.write() as session:
        await revoke_api_keys_named(session, "tests")
    reply = await api.call("GET", "/api/v1/widgets")
    assert reply.status == 401 and reply.body["error"]["code"] == "unauthorized"


async def test_the_scheme_is_case_insensitive(anonymous, api_key):
    reply = await anonymous.call("GET", "/api/v1/widgets", headers={"Authorization": f"bearer {api_key}"})
    assert reply.status == 200


async def test_unknown_paths_need_a_key_before_they_say_not_found(anonymous, api):
    assert (await anonymous.call("GET", "/api/v1/secret-admin")).status == 401
    error = await api.error("GET", "/api/v1/secret-admin", 404)
    assert error["code"] == "not_found"


async def test_the_openapi_document_needs_no_key(anonymous):
    reply = await anonymous.call("GET", "/api/openapi.json")
    assert reply.status == 200 and reply.body["openapi"].startswith("3.")


async def test_paths_that_only_share_a_prefix_are_not_guarded(anonymous):
    # /offlinemessages-export is not an API path: the API key check must not claim it.
    reply = await anonymous.client.get("/offlinemessages-export")
    assert reply.status == 404 and "WWW-Authenticate" not in reply.headers


async def test_last_used_at_is_written_at_most_once_a_minute(api, api_key, services):
    assert await _last_used(services, api_key) is None
    await api.get("/api/v1/widgets")
    first = await _last_used(services, api_key)
    assert first is not None and utcnow() - first < timedelta(seconds=5)
    await api.get("/api/v1/widgets")
    await api.get("/api/v1/agents")
    assert await _last_used(services, api_key) == first

    # A minute later the next request records use again.
    earlier = first - timedelta(seconds=61)
    async with services.db.write() as session:
        await session.execute(update(ApiKey).values(last_used_at=earlier))
    await api.get("/api/v1/widgets")
    assert await _last_used(services, api_key) > first


async def test_each_key_is_tracked_separately(client, services, api_key):
    other = await new_api_key(services, "other")
    await Api(client, api_key).get("/api/v1/widgets")
    assert await _last_used(services, api_key) is not None
    assert await _last_used(services, other) is None
    await Api(client, other).get("/api/v1/widgets")
    assert await _last_used(services, other) is not None
