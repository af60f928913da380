"""The offline form endpoint: validated, stored first, rate limited, JSON errors."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from core.models import OfflineMessage, OutboxItem
from core.services import Services
from core.widgets import create_widget
from tests.sql_statements import statements

GOOD = {"name": "Rita", "email": "rita@example.com", "message": "Please call me back", "page_url": "https://shop.example/"}


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


async def _stored(services: Services) -> list[OfflineMessage]:
    async with services.db.read() as session:
        return list((await session.execute(select(OfflineMessage))).scalars())


async def test_a_valid_submission_is_stored_and_confirmed(client, widget, services):
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json=GOOD)
    assert resp.status == 201
    body = await resp.json()
    assert body["status"] == "new" and "Thanks" in body["message"]
    [row] = await _stored(services)
    assert (row.id, row.email, row.message, row.status) == (body["id"], "rita@example.com", "Please call me back", "new")


async def test_every_bad_field_is_named_in_one_422(client, widget, services):
    resp = await client.post(
        f"/widget/{widget.key}/offline-messages",
        json={"email": "not-an-email", "message": "", "page_url": "javascript:alert(1)"},
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {"email", "message", "page_url"}
    assert await _stored(services) == []


async def test_overlong_message_is_refused_with_its_limit(client, widget):
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json={**GOOD, "message": "x" * 5001})
    assert resp.status == 422
    assert "5000" in (await resp.json())["error"]["fields"]["message"]


async def test_the_honeypot_answers_like_success_and_stores_nothing(client, widget, services):
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json={**GOOD, "website": "http://spam"})
    assert resp.status == 201
    assert await _stored(services) == []


async def test_too_many_submissions_from_one_address_get_429_with_a_message(client, widget, services):
    services.limits.offline_per_ip_per_hour = 2
    for _ in range(2):
        assert (await client.post(f"/widget/{widget.key}/offline-messages", json=GOOD)).status == 201
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json=GOOD)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "try again" in (await resp.json())["error"]["message"]
    assert len(await _stored(services)) == 2


async def test_malformed_json_is_a_400(client, widget):
    resp = await client.post(
        f"/widget/{widget.key}/offline-messages", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_json"


async def test_an_oversized_body_is_a_413(client, widget):
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json={**GOOD, "message": "x" * 40000})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"


async def test_unknown_widget_key_is_a_json_404(client):
    resp = await client.post("/widget/nope/offline-messages", json=GOOD)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_cross_site_pages_can_read_the_answer_including_errors(client, widget):
    origin = {"Origin": "https://shop.example"}
    pre = await client.options(f"/widget/{widget.key}/offline-messages", headers=origin)
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    bad = await client.post(f"/widget/{widget.key}/offline-messages", json={}, headers=origin)
    assert bad.status == 422 and bad.headers["Access-Control-Allow-Origin"] == "https://shop.example"


async def test_a_page_outside_allowed_origins_is_refused(client, services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Locked", "allowed_origins": ["https://shop.example"]})
    resp = await client.post(
        f"/widget/{widget.key}/offline-messages", json=GOOD, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "origin_not_allowed"


async def test_config_carries_texts_status_and_socket_url(client, widget):
    resp = await client.get(f"/widget/{widget.key}/config")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["texts"]["online_tab_text"] == "Chat with us"
    assert body["status"]["mode"] == "form"
    assert body["ws_url"].endswith(f"/widget/{widget.key}/ws") and body["ws_url"].startswith("ws://")


async def test_widget_script_is_gzipped_cached_and_small(client):
    resp = await client.get("/widget.js", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert "max-age" in resp.headers["Cache-Control"]
    assert len(await resp.read()) <= 15 * 1024
    again = await client.get("/widget.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_submissions_arriving_together_are_stored_together_each_answered_with_its_own_row(client, services):
    """Submissions queued for one transaction share one INSERT of their messages (one
    statement on PostgreSQL; on SQLite one call, row by row) and one of the emails they owe
    (one statement on both), rather than an email before each next message. Each 201 still
    names its own row, and each message has its own email."""
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "notify_emails": ["team@shop.example"]})
    services.limits.offline_per_ip_per_hour = 1000
    url = f"/widget/{widget.key}/offline-messages"
    await client.post(url, json=GOOD)  # the committer exists, its counts start here
    committer = services.db.group_commit
    assert committer is not None
    batches = committer.stats.batches
    with statements(services.db) as seen:
        resps = await asyncio.gather(*(client.post(url, json={**GOOD, "message": f"m{i:02d}", "email": f"v{i}@example.com"})
                                      for i in range(30)))
    assert [r.status for r in resps] == [201] * 30
    ids = [(await r.json())["id"] for r in resps]
    rows = {row.id: row for row in await _stored(services)}
    assert [(rows[i].message, rows[i].email) for i in ids] == [(f"m{n:02d}", f"v{n}@example.com") for n in range(30)]
    async with services.db.read() as session:
        emails = list((await session.execute(select(OutboxItem).where(OutboxItem.kind == "email.offline_message"))).scalars())
    owed = sorted((e.ref_id, e.payload["offline_message"]["message"]) for e in emails if e.ref_id in ids)
    assert owed == sorted((i, rows[i].message) for i in ids)
    used = committer.stats.batches - batches
    assert committer.stats.retried_singly == 0 and 1 <= used < 30
    inserts = [s.split()[2] for s in seen if s.startswith("INSERT INTO")]
    assert set(inserts) == {"offline_messages", "outbox"}
    runs = [table for n, table in enumerate(inserts) if n == 0 or inserts[n - 1] != table]
    assert len(runs) <= 2 * used  # per batch the messages, then the emails: never interleaved
    assert inserts.count("outbox") == used  # a batch's emails in one statement, as plain columns
    if not services.db.is_sqlite:
        assert inserts.count("offline_messages") == used
