"""Retention and visitors' data requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.apikeys import create_api_key
from core.clock import utcnow
from core.models import Conversation, Message, OfflineMessage
from core.offline import store_offline_message
from core.privacy import purge_expired
from core.services import Services
from core.widgets import create_widget
from tests.widget_client import Visitor

FORM = {"name": "Rita", "email": "Rita@Example.com", "message": "Call me", "page_url": None}


@pytest.fixture
async def api(services: Services):
    async with services.db.write() as session:
        _key, secret = await create_api_key(session, "privacy")
    return {"Authorization": f"Bearer {secret}"}


async def _count(services: Services, model) -> int:  # type: ignore[no-untyped-def]
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_retention_removes_old_offline_messages_and_closed_chats_only(services: Services):
    async with services.db.write() as session:
        kept_forever = await create_widget(session, {"name": "Forever"})
        short = await create_widget(session, {"name": "Short", "retention_days": 30})
        old = await store_offline_message(session, short, FORM)
        old.created_at = utcnow() - timedelta(days=31)
        await store_offline_message(session, short, FORM)
        ancient = await store_offline_message(session, kept_forever, FORM)
        ancient.created_at = utcnow() - timedelta(days=3000)
        closed = Conversation(widget_id=short.id, visitor_id="v_1", status="closed", last_seq=0)
        still_open = Conversation(widget_id=short.id, visitor_id="v_2", status="open", last_seq=0)
        session.add_all([closed, still_open])
        await session.flush()
        closed.updated_at = still_open.updated_at = utcnow() - timedelta(days=40)
    async with services.db.write() as session:
        removed = await purge_expired(session)
    assert removed == {"offline_messages": 1, "conversations": 1}
    assert await _count(services, OfflineMessage) == 2
    assert await _count(services, Conversation) == 1


async def test_a_visitor_can_get_a_copy_of_their_data_and_have_it_erased(client, services: Services, api):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await store_offline_message(session, widget, FORM)
        await store_offline_message(session, widget, {**FORM, "email": "someone@else.com"})
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("my order", "c1")
    async with services.db.write() as session:
        conv = await session.get(Conversation, ack["conversation_id"])
        conv.visitor_email = "rita@example.com"
    await services.chat.agent_message(conv.id, "note: internal", author="Ana")
    resp = await client.get("/api/v1/privacy/visitor", params={"email": "rita@example.com"}, headers=api)
    assert resp.status == 200
    body = await resp.json()
    assert [m["email"] for m in body["offline_messages"]] == ["Rita@Example.com"]
    [conversation] = body["conversations"]
    assert [m["text"] for m in conversation["messages"]] == ["my order"]  # notes are the team's, not the visitor's
    erased = await client.delete("/api/v1/privacy/visitor", params={"email": "RITA@example.com"}, headers=api)
    assert await erased.json() == {"offline_messages": 1, "conversations": 1}
    assert await _count(services, OfflineMessage) == 1
    assert await _count(services, Message) == 0


async def test_a_bad_email_is_a_422_naming_it(client, api):
    resp = await client.get("/api/v1/privacy/visitor", params={"email": "nope"}, headers=api)
    assert resp.status == 422
    assert "email" in (await resp.json())["error"]["fields"]
