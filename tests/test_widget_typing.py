"""Visitor typing frames: published for the socket's own conversation, without a database read."""

from __future__ import annotations

from typing import Any

import pytest

from core import events as ev
from core.services import Limits, Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.sql_statements import statements
from tests.widget_client import Visitor


@pytest.fixture
def limits() -> Limits:
    return Limits(connections_per_ip=1000, messages_per_ip_per_minute=1000)


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


@pytest.fixture
def typed(services: Services) -> list[dict[str, Any]]:
    """Visitor typing events published on the bus (what consoles and other processes get)."""
    seen: list[dict[str, Any]] = []

    async def record(_name: str, data: dict[str, Any]) -> None:
        if data["from"] == "visitor":
            seen.append(data)

    services.bus.subscribe(ev.TYPING, record)
    return seen


async def _settled(visitor: Visitor, services: Services) -> None:
    """Every frame sent so far handled (a socket handles its frames in order), events delivered."""
    await visitor.send(type="ping")
    await visitor.next("pong")
    await services.bus.drain()  # type: ignore[attr-defined]


async def _chatting(client, widget, services: Services, client_id: str = "c1") -> tuple[Visitor, int]:  # type: ignore[no-untyped-def]
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hello", client_id)
    await visitor.next("message")  # the socket now follows its conversation
    return visitor, ack["conversation_id"]


async def test_typing_frames_cost_no_database_statements(client, widget, services, typed):
    visitor, conv_id = await _chatting(client, widget, services)
    await _settled(visitor, services)
    with statements(services.db) as ran:
        for i in range(40):
            await visitor.send(type="typing", active=i % 2 == 0)
        await _settled(visitor, services)
    assert ran == []
    assert len(typed) == 40
    assert {(t["conversation_id"], t["widget_id"]) for t in typed} == {(conv_id, widget.id)}
    assert [t["active"] for t in typed] == [i % 2 == 0 for i in range(40)]


async def test_a_returning_visitor_types_in_the_conversation_found_at_the_welcome(client, widget, services, typed):
    first, conv_id = await _chatting(client, widget, services)
    await first.close()
    back = await Visitor.connect(
        client, widget.key, token=first.welcome["token"], conversation_id=conv_id, resume_after=1
    )
    with statements(services.db) as ran:
        await back.send(type="typing", active=True)
        await _settled(back, services)
    assert ran == []
    assert [(t["conversation_id"], t["active"]) for t in typed] == [(conv_id, True)]


async def test_typing_before_the_first_message_is_ignored(client, widget, services, typed):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.send(type="typing", active=True)
    await _settled(visitor, services)
    assert typed == []
    assert [f for f in await visitor.quiet(0.1) if f["type"] == "error"] == []


async def test_typing_after_the_conversation_closed_is_ignored(client, widget, services, typed):
    visitor, conv_id = await _chatting(client, widget, services)
    await services.chat.close(conv_id)
    assert (await visitor.next("conversation"))["state"] == "closed"
    await visitor.send(type="typing", active=True)
    await _settled(visitor, services)
    assert typed == []


async def test_typing_naming_a_conversation_the_socket_does_not_own_is_ignored(client, widget, services, typed):
    _alice, alice_conv = await _chatting(client, widget, services, "a1")
    bob, bob_conv = await _chatting(client, widget, services, "b1")
    assert alice_conv != bob_conv
    await bob.send(type="typing", active=True, conversation_id=alice_conv)
    await _settled(bob, services)
    assert typed == []
    await bob.send(type="typing", active=True, conversation_id=bob_conv)
    await bob.send(type="typing", active=False)
    await _settled(bob, services)
    assert [(t["conversation_id"], t["active"]) for t in typed] == [(bob_conv, True), (bob_conv, False)]


async def test_a_flood_of_identical_typing_frames_is_published_once(client, widget, services, typed):
    visitor, conv_id = await _chatting(client, widget, services)
    for _ in range(25):
        await visitor.send(type="typing", active=True)
    await visitor.send(type="typing", active=False)
    await _settled(visitor, services)
    assert [(t["conversation_id"], t["active"]) for t in typed] == [(conv_id, True), (conv_id, False)]


async def test_visitor_typing_reaches_no_other_visitor(client, widget, services, typed):
    alice, _alice_conv = await _chatting(client, widget, services, "a1")
    bob, _bob_conv = await _chatting(client, widget, services, "b1")
    await alice.send(type="typing", active=True)
    await _settled(alice, services)
    await eventually(lambda: typed)
    assert [f for f in await bob.quiet(0.2) if f["type"] == "typing"] == []
    assert [f for f in await alice.quiet(0.05) if f["type"] == "typing"] == []
