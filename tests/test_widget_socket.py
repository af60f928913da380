"""The visitor WebSocket protocol: hello, ack after commit, resume, relay and status."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from core.agents import create_agent
from core.models import Conversation, Message
from core.services import Services
from core.widgets import create_widget
from tests.widget_client import Visitor


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


@pytest.fixture
async def agent(services: Services):
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": "ana@example.com"})
    return await services.chat.set_duty(agent.id, True)


async def _count(services: Services, model) -> int:  # type: ignore[no-untyped-def]
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_welcome_gives_a_signed_token_and_status_without_storing_anything(client, widget, services):
    visitor = await Visitor.connect(client, widget.key)
    welcome = visitor.welcome
    assert welcome["conversation_id"] is None
    assert services.visitor_tokens.verify(welcome["token"]) == welcome["visitor_id"]
    assert welcome["status"]["online"] is False
    assert welcome["status"]["reason"] == "no_agent_available"
    assert welcome["status"]["mode"] == "form"
    assert await _count(services, Conversation) == 0


async def test_first_message_opens_a_conversation_and_is_acked_after_commit(client, widget, services):
    visitor = await Visitor.connect(client, widget.key, page_url="https://shop.example/pricing", language="pt-BR")
    ack = await visitor.say("Hello, is anyone there?", "c1")
    assert ack["type"] == "ack" and ack["client_id"] == "c1" and ack["seq"] == 1
    async with services.db.read() as session:
        stored = await session.get(Message, ack["id"])
        conv = await session.get(Conversation, ack["conversation_id"])
    assert stored is not None and stored.text == "Hello, is anyone there?"
    assert conv.page_url == "https://shop.example/pricing" and conv.language == "pt-BR"
    echoed = await visitor.next("message")
    assert echoed["seq"] == 1 and echoed["from"] == "visitor" and echoed["client_id"] == "c1"


async def test_resending_the_same_client_id_stores_nothing_twice(client, widget, services):
    visitor = await Visitor.connect(client, widget.key)
    first = await visitor.say("Order 1234 is late", "same-id")
    again = await visitor.say("Order 1234 is late", "same-id")
    assert again["id"] == first["id"] and again["seq"] == first["seq"]
    assert await _count(services, Message) == 1


async def test_agent_reply_reaches_the_visitor_with_the_agents_name(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("Do you ship to Lisbon?", "c1")
    await services.chat.agent_message(ack["conversation_id"], "Yes, in 2 days.", agent_id=agent.id)
    reply = await visitor.next("message")
    while reply["from"] != "agent":
        reply = await visitor.next("message")
    assert reply["text"] == "Yes, in 2 days." and reply["author"] == "Ana Lima" and reply["seq"] == 2


async def test_internal_notes_never_reach_the_visitor(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hi", "c1")
    conv_id = ack["conversation_id"]
    await services.chat.agent_message(conv_id, "note: VIP customer", agent_id=agent.id)
    await services.chat.agent_message(conv_id, "!check the CRM first", agent_id=agent.id)
    await services.chat.agent_message(conv_id, "Hello!", agent_id=agent.id)
    texts = []
    while "Hello!" not in texts:
        texts.append((await visitor.next("message"))["text"])
    assert texts == ["hi", "Hello!"]


async def test_reconnect_with_resume_after_gets_every_later_message_once_in_order(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("first", "c1")
    token, conv_id = visitor.welcome["token"], ack["conversation_id"]
    await visitor.close()
    for n in range(5):
        await services.chat.agent_message(conv_id, f"reply {n}", agent_id=agent.id)
    back = await Visitor.connect(client, widget.key, token=token, conversation_id=conv_id, resume_after=1)
    assert back.welcome["conversation_id"] == conv_id
    replayed = [await back.next("message") for _ in range(5)]
    assert all(f["replay"] for f in replayed)
    assert [f["seq"] for f in replayed] == [2, 3, 4, 5, 6]
    assert [f["text"] for f in replayed] == [f"reply {n}" for n in range(5)]
    # Nothing more: no message twice. (A status frame may come: the agent was just seen.)
    assert [f for f in await back.quiet() if f["type"] == "message"] == []


async def test_a_new_page_load_with_the_token_gets_the_whole_conversation(client, widget, services):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("one", "c1")
    await visitor.say("two", "c2")
    token = visitor.welcome["token"]
    reload = await Visitor.connect(client, widget.key, token=token)
    assert [(await reload.next("message"))["text"] for _ in range(2)] == ["one", "two"]


async def test_a_forged_token_gets_a_new_visitor_and_no_one_elses_conversation(client, widget, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("private", "c1")
    forged = visitor.welcome["visitor_id"] + ".AAAAAAAAAAAAAAAAAAAAAAAA"
    other = await Visitor.connect(client, widget.key, token=forged, conversation_id=ack["conversation_id"])
    assert other.welcome["conversation_id"] is None
    assert other.welcome["visitor_id"] != visitor.welcome["visitor_id"]
    assert await other.quiet() == []


async def test_messages_from_two_tabs_reach_both_tabs(client, widget, services):
    tab1 = await Visitor.connect(client, widget.key)
    tab2 = await Visitor.connect(client, widget.key, token=tab1.welcome["token"])
    await tab1.say("from tab one", "c1")
    frame = await tab2.next("message")
    assert frame["text"] == "from tab one"


async def test_closing_tells_the_visitor_and_the_next_message_starts_a_new_conversation(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("thanks, bye", "c1")
    await services.chat.agent_message(ack["conversation_id"], "!close", agent_id=agent.id)
    closed = await visitor.next("conversation")
    assert closed == {"type": "conversation", "conversation_id": ack["conversation_id"], "state": "closed"}
    again = await visitor.say("one more thing", "c2")
    assert again["conversation_id"] != ack["conversation_id"] and again["seq"] == 1


async def test_status_flips_live_when_the_last_agent_goes_off_duty(client, widget, agent, services):
    await services.watcher.refresh()
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["online"] is True
    assert visitor.welcome["status"]["mode"] == "live"
    await services.chat.set_duty(agent.id, False)
    status = await visitor.next("status")
    assert status["online"] is False and status["reason"] == "no_agent_available" and status["mode"] == "form"


async def test_bad_frames_get_an_error_and_the_socket_stays_usable(client, widget, services):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.ws.send_str("not json")
    assert (await visitor.next("error"))["code"] == "bad_frame"
    await visitor.send(type="dance")
    assert (await visitor.next("error"))["code"] == "bad_frame"
    await visitor.send(type="message", client_id="c1", text="")
    assert (await visitor.next("error"))["code"] == "validation_failed"
    await visitor.send(type="message", client_id="c2", text="x" * 4001)
    error = await visitor.next("error")
    assert error["code"] == "validation_failed" and "4000" in error["message"]
    ack = await visitor.say("still here", "c3")
    assert ack["type"] == "ack"


async def test_a_frame_over_16_kb_closes_only_that_socket(client, widget, services):
    bystander = await Visitor.connect(client, widget.key)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.ws.send_str(json.dumps({"type": "message", "client_id": "big", "text": "x" * 17000}))
    msg = await visitor.ws.receive(timeout=3)
    assert msg.type.name in {"CLOSE", "CLOSED", "CLOSING"}
    assert visitor.ws.close_code == 1009
    assert (await bystander.say("unaffected", "c1"))["type"] == "ack"


async def test_unknown_widget_key_is_a_json_404(client):
    resp = await client.get("/widget/nope/ws")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_pages_outside_the_allowed_origins_cannot_open_a_socket(client, services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Locked", "allowed_origins": ["https://shop.example"]})
    refused = await client.get(f"/widget/{widget.key}/ws", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    ws = await client.ws_connect(f"/widget/{widget.key}/ws", headers={"Origin": "https://shop.example"})
    await ws.close()


async def test_visitors_sending_too_fast_are_told_to_slow_down(client, widget, services):
    services.limits.messages_per_connection_per_minute = 3
    visitor = await Visitor.connect(client, widget.key)
    for n in range(3):
        assert (await visitor.say(f"m{n}", f"c{n}"))["type"] == "ack"
    error = await visitor.say("m3", "c3")
    assert error["code"] == "rate_limited" and error["client_id"] == "c3"


async def test_agent_typing_is_shown_to_the_visitor(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hi", "c1")
    async with services.db.read() as session:
        conv = await session.get(Conversation, ack["conversation_id"])
    await services.chat.typing(conv, "agent", "Ana Lima", True)
    typing = await visitor.next("typing")
    assert typing == {"type": "typing", "from": "agent", "author": "Ana Lima", "active": True}


async def test_concurrent_agent_replies_arrive_in_seq_order(client, widget, agent, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hi", "c1")
    await asyncio.gather(
        *(services.chat.agent_message(ack["conversation_id"], f"r{n}", agent_id=agent.id) for n in range(10))
    )
    seqs = []
    while len(seqs) < 11:
        seqs.append((await visitor.next("message"))["seq"])
    assert seqs == list(range(1, 12))
    assert [f for f in await visitor.quiet() if f["type"] == "message"] == []  # (status frames may come)


async def test_a_settings_change_tells_open_widgets_to_reread_their_config(client, widget, services):
    from core import events as ev

    visitor = await Visitor.connect(client, widget.key)
    await services.bus.publish(ev.WIDGET_CHANGED, {"widget_id": widget.id})
    assert await visitor.next("config") == {"type": "config"}
