"""The agent console: sign-in links, the cookie-authenticated API and the live socket."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from core.agents import create_agent, issue_token
from core.clock import utcnow
from core.models import Agent, AgentToken
from core.services import Services
from core.tokens import hash_secret
from core.widgets import create_widget
from tests.conftest import eventually
from tests.widget_client import Visitor

COOKIE = "deskbell_console"


async def new_agent(services: Services, name: str, email: str, **fields: Any) -> tuple[Agent, str]:
    """An agent and a console session token for them."""
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": name, "email": email, **fields})
        token = await issue_token(session, agent, "session")
    return agent, token


def as_agent(token: str, **extra: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}", **extra}


class ConsoleSocket:
    """The console's side of ``/console/ws`` in tests."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []  # frames received but not asked for yet

    @classmethod
    async def open(cls, client: Any, token: str) -> "ConsoleSocket":
        sock = cls(await client.ws_connect("/console/ws", headers=as_agent(token)))
        sock.me = await sock.next("me")
        return sock

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def next(self, kind: str, where: Any = lambda f: True, timeout: float = 3.0) -> dict[str, Any]:
        """The first frame of ``kind`` matching ``where``, in arrival order."""
        for frame in self.backlog:
            if frame["type"] == kind and where(frame):
                self.backlog.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type.name != "TEXT":
                    raise AssertionError(f"socket ended: {msg.type.name} {msg.data!r}")
                frame = json.loads(msg.data)
                if frame["type"] == kind and where(frame):
                    return frame
                self.backlog.append(frame)

    async def frames_for(self, seconds: float) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    msg = await self.ws.receive()
                    if msg.type.name != "TEXT":
                        return got
                    got.append(json.loads(msg.data))
        except TimeoutError:
            return got


async def agent_lines(visitor: Visitor) -> dict[str, Any]:
    while True:
        frame = await visitor.next("message")
        if frame["from"] == "agent":
            return frame


@pytest.fixture
async def widget(services: Services):
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


@pytest.fixture
async def ana(services: Services) -> tuple[Agent, str]:
    return await new_agent(services, "Ana Lima", "ana@example.com")


# -- signing in ---------------------------------------------------------------
async def test_login_link_sets_a_strict_http_only_cookie_and_redirects_to_the_console(client, services):
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": "ana@example.com"})
        link_token = await issue_token(session, agent, "login")

    resp = await client.get(f"/console/login?token={link_token}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=ds_")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=2592000"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure

    page = await client.get("/console")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    me = await (await client.get("/console/api/me")).json()
    assert me["name"] == "Ana Lima" and me["email"] == "ana@example.com"

    again = await client.get(f"/console/login?token={link_token}", allow_redirects=False)
    assert again.status == 303  # a link can be used again within its 7 days


async def test_login_over_https_marks_the_cookie_secure(client, services):
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": "ana@example.com"})
        link_token = await issue_token(session, agent, "login")
    resp = await client.get(
        f"/console/login?token={link_token}", allow_redirects=False, headers={"X-Forwarded-Proto": "https"}
    )
    assert resp.status == 303 and "Secure" in resp.headers["Set-Cookie"]


async def test_bad_or_expired_link_shows_a_friendly_401_page(client, services):
    resp = await client.get("/console/login?token=dl_not-a-real-token", allow_redirects=False)
    assert resp.status == 401 and "text/html" in resp.headers["Content-Type"]
    text = await resp.text()
    assert "deskbell agent link EMAIL" in text and "Set-Cookie" not in resp.headers

    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": "ana@example.com"})
        link_token = await issue_token(session, agent, "login")
        await session.execute(update(AgentToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = await client.get(f"/console/login?token={link_token}", allow_redirects=False)
    assert resp.status == 401

    missing = await client.get("/console/login", allow_redirects=False)
    assert missing.status == 401


async def test_a_session_token_is_not_a_sign_in_link(client, services, ana):
    _agent, session_token = ana
    resp = await client.get(f"/console/login?token={session_token}", allow_redirects=False)
    assert resp.status == 401


async def test_console_page_without_a_session_shows_how_to_sign_in(client):
    resp = await client.get("/console")
    assert resp.status == 401
    assert "deskbell agent link EMAIL" in await resp.text()
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"


async def test_arriving_from_another_site_reloads_once_so_the_strict_cookie_is_sent(client):
    resp = await client.get("/console", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 200
    assert '<meta http-equiv="refresh" content="0">' in await resp.text()


async def test_api_without_a_session_answers_401_json(client):
    for method, path in (("GET", "me"), ("GET", "conversations"), ("POST", "duty"), ("POST", "conversations/1/claim")):
        resp = await client.request(method, f"/console/api/{path}", json={"on_duty": True})
        assert resp.status == 401, path
        body = await resp.json()
        assert body["error"]["code"] == "unauthorized" and "deskbell agent link" in body["error"]["message"]
    resp = await client.get("/console/api/me", headers=as_agent("ds_made-up"))
    assert resp.status == 401
    sock = await client.get("/console/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert sock.status == 401


async def test_signing_out_ends_the_session_and_its_live_socket(client, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    resp = await client.post("/console/api/logout", json={}, headers=as_agent(token))
    assert resp.status == 200 and f"{COOKIE}=" in resp.headers["Set-Cookie"]
    assert (await client.get("/console/api/me", headers=as_agent(token))).status == 401
    closed = await console.ws.receive(timeout=3)
    assert closed.type.name == "CLOSE" and closed.data == 4401  # the page shows "signed out"


# -- CSRF ----------------------------------------------------------------------
async def test_state_changes_from_another_origin_are_refused(client, services, ana):
    agent, token = ana
    resp = await client.post(
        "/console/api/duty", json={"on_duty": True}, headers=as_agent(token, Origin="https://evil.example")
    )
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "cross_site_request"
    resp = await client.post(
        "/console/api/duty", json={"on_duty": True}, headers=as_agent(token, **{"Sec-Fetch-Site": "cross-site"})
    )
    assert resp.status == 403
    form = await client.post(
        "/console/api/duty", data="on_duty=true", headers=as_agent(token, **{"Content-Type": "text/plain"})
    )
    assert form.status == 415
    async with services.db.read() as session:
        assert (await session.get(Agent, agent.id)).on_duty is False

    own = f"http://{client.server.host}:{client.server.port}"
    resp = await client.post("/console/api/duty", json={"on_duty": True}, headers=as_agent(token, Origin=own))
    assert resp.status == 200 and (await resp.json())["on_duty"] is True


async def test_console_socket_refuses_a_foreign_origin(client, ana):
    _agent, token = ana
    resp = await client.get(
        "/console/ws",
        headers=as_agent(token, Origin="https://evil.example", Connection="Upgrade", Upgrade="websocket"),
    )
    assert resp.status == 403


# -- duty and availability -----------------------------------------------------
async def test_going_on_duty_updates_me_and_brings_the_widget_online(client, services, widget, ana):
    agent, token = ana
    console = await ConsoleSocket.open(client, token)
    assert console.me["agent"]["on_duty"] is False

    resp = await client.post("/console/api/duty", json={"on_duty": True}, headers=as_agent(token))
    assert resp.status == 200
    body = await resp.json()
    assert body["on_duty"] is True and body["available"] is True
    me = await (await client.get("/console/api/me", headers=as_agent(token))).json()
    assert me["on_duty"] is True and me["available"] is True and me["stay_available"] is False

    async def online() -> bool:
        config = await (await client.get(f"/widget/{widget.key}/config")).json()
        return config["status"]["online"] is True

    await eventually(online)
    status = await console.next("status", lambda f: f["widget_id"] == widget.id)
    assert status["online"] is True and status["key"] == widget.key
    pushed = await console.next("me", lambda f: f["agent"]["on_duty"])
    assert pushed["agent"]["available"] is True
    widgets = await (await client.get("/console/api/widgets", headers=as_agent(token))).json()
    assert widgets["items"][0]["status"]["online"] is True

    await client.post("/console/api/duty", json={"on_duty": False}, headers=as_agent(token))
    offline = await console.next("status", lambda f: f["widget_id"] == widget.id and not f["online"])
    assert offline["reason"] == "no_agent_available"


async def test_stay_available_toggle_is_saved(client, services, ana):
    _agent, token = ana
    resp = await client.post("/console/api/stay", json={"stay_available": True}, headers=as_agent(token))
    assert resp.status == 200 and (await resp.json())["stay_available"] is True
    bad = await client.post("/console/api/stay", json={"stay_available": "yes"}, headers=as_agent(token))
    assert bad.status == 422 and "stay_available" in (await bad.json())["error"]["fields"]


async def test_heartbeat_from_an_open_console_counts_as_being_seen(client, services, ana):
    agent, token = ana
    async with services.db.write() as session:
        await session.execute(
            update(Agent).where(Agent.id == agent.id).values(on_duty=True, last_seen_at=utcnow() - timedelta(hours=1))
        )
    console = await ConsoleSocket.open(client, token)
    assert console.me["agent"]["available"] is False
    await console.send(type="heartbeat")
    pushed = await console.next("me", lambda f: f["agent"]["available"])
    assert pushed["agent"]["on_duty"] is True


async def test_heartbeat_after_the_session_is_revoked_closes_the_socket(client, services, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    async with services.db.write() as session:
        await session.execute(AgentToken.__table__.delete().where(AgentToken.token_hash == hash_secret(token)))
    await console.send(type="heartbeat")
    closed = await console.ws.receive(timeout=3)
    assert closed.type.name == "CLOSE" and closed.data == 4401


# -- conversations -------------------------------------------------------------
async def test_visitor_and_console_agent_chat_end_to_end(client, services, widget, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key, page_url="https://shop.example/pricing")
    await visitor.send(type="message", client_id="c1", text="hi")
    ack = await visitor.next("ack")
    conv_id = ack["conversation_id"]

    incoming = await console.next("message")
    assert incoming["message"]["text"] == "hi" and incoming["message"]["from"] == "visitor"
    assert incoming["message"]["conversation_id"] == conv_id and incoming["widget_id"] == widget.id

    listed = await (await client.get("/console/api/conversations?status=open", headers=as_agent(token))).json()
    (item,) = listed["items"]
    assert item["id"] == conv_id and item["widget_name"] == "Shop"
    assert item["page_url"] == "https://shop.example/pricing"
    assert item["last_message"]["text"] == "hi" and item["claimed_by_name"] is None
    closed_list = await (await client.get("/console/api/conversations?status=closed", headers=as_agent(token))).json()
    assert closed_list["items"] == []

    resp = await client.post(
        f"/console/api/conversations/{conv_id}/messages", json={"text": "Hello! How can I help?"}, headers=as_agent(token)
    )
    assert resp.status == 201
    sent = (await resp.json())["message"]
    assert sent["from"] == "agent" and sent["internal"] is False

    reply = await agent_lines(visitor)
    assert reply["text"] == "Hello! How can I help?" and reply["author"] == "Ana Lima"
    echoed = await console.next("message", lambda f: f["message"]["from"] == "agent")
    assert echoed["message"]["author"] == "Ana Lima"

    history = await (await client.get(f"/console/api/conversations/{conv_id}/messages", headers=as_agent(token))).json()
    assert [m["text"] for m in history["items"]] == ["hi", "Hello! How can I help?"]
    assert history["conversation"]["id"] == conv_id


async def test_internal_notes_reach_the_console_but_never_the_visitor(client, services, widget, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("my order is late", "c1")
    conv_id = ack["conversation_id"]
    await visitor.next("message")  # the echo of their own line

    resp = await client.post(
        f"/console/api/conversations/{conv_id}/messages",
        json={"text": "note: check the courier first"},
        headers=as_agent(token),
    )
    assert resp.status == 201 and (await resp.json())["message"]["internal"] is True
    note = await console.next("message", lambda f: f["message"]["internal"])
    assert note["message"]["text"] == "note: check the courier first"
    await client.post(f"/console/api/conversations/{conv_id}/messages", json={"text": "!also this"}, headers=as_agent(token))
    await console.next("message", lambda f: f["message"]["text"] == "!also this")
    assert not [f for f in await visitor.quiet(0.4) if f["type"] == "message"]

    history = await (await client.get(f"/console/api/conversations/{conv_id}/messages", headers=as_agent(token))).json()
    assert [m["internal"] for m in history["items"]] == [False, True, True]


async def test_bang_close_closes_the_chat_for_the_visitor(client, services, widget, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("bye", "c1"))["conversation_id"]

    resp = await client.post(f"/console/api/conversations/{conv_id}/messages", json={"text": "!close"}, headers=as_agent(token))
    assert resp.status == 200
    body = await resp.json()
    assert body["message"] is None and body["conversation"]["status"] == "closed"

    closed = await visitor.next("conversation")
    assert closed == {"type": "conversation", "conversation_id": conv_id, "state": "closed"}
    pushed = await console.next("conversation", lambda f: f["conversation"]["status"] == "closed")
    assert pushed["conversation"]["id"] == conv_id and pushed["conversation"]["widget_name"] == "Shop"
    listed = await (await client.get("/console/api/conversations?status=closed", headers=as_agent(token))).json()
    assert [c["id"] for c in listed["items"]] == [conv_id]
    late = await client.post(f"/console/api/conversations/{conv_id}/messages", json={"text": "hello?"}, headers=as_agent(token))
    assert late.status == 409


async def test_close_button_closes_the_conversation(client, services, widget, ana):
    _agent, token = ana
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("hello", "c1"))["conversation_id"]
    resp = await client.post(f"/console/api/conversations/{conv_id}/close", json={}, headers=as_agent(token))
    assert resp.status == 200 and (await resp.json())["status"] == "closed"
    assert (await visitor.next("conversation"))["state"] == "closed"


async def test_a_second_agent_cannot_take_a_claimed_conversation(client, services, widget, ana):
    ana_agent, ana_token = ana
    _bo, bo_token = await new_agent(services, "Bo Chen", "bo@example.com")
    console = await ConsoleSocket.open(client, bo_token)
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("hello", "c1"))["conversation_id"]

    first = await client.post(f"/console/api/conversations/{conv_id}/claim", json={}, headers=as_agent(ana_token))
    assert first.status == 200
    claimed = await first.json()
    assert claimed["claimed_by"] == ana_agent.id and claimed["claimed_by_name"] == "Ana Lima"
    pushed = await console.next("conversation", lambda f: f["conversation"]["claimed_by"] is not None)
    assert pushed["conversation"]["claimed_by_name"] == "Ana Lima"

    second = await client.post(f"/console/api/conversations/{conv_id}/claim", json={}, headers=as_agent(bo_token))
    assert second.status == 409 and (await second.json())["error"]["code"] == "conflict"
    again = await client.post(f"/console/api/conversations/{conv_id}/claim", json={}, headers=as_agent(ana_token))
    assert again.status == 200  # claiming your own conversation again is harmless


async def test_visitor_typing_shows_in_the_console_and_agent_typing_reaches_the_visitor(client, services, widget, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("hello", "c1"))["conversation_id"]
    await visitor.send(type="typing", active=True)
    typing = await console.next("typing")
    assert typing["conversation_id"] == conv_id and typing["from"] == "visitor" and typing["active"] is True

    resp = await client.post(f"/console/api/conversations/{conv_id}/typing", json={"active": True}, headers=as_agent(token))
    assert resp.status == 204
    shown = await visitor.next("typing")
    assert shown["from"] == "agent" and shown["author"] == "Ana Lima" and shown["active"] is True


async def test_agents_see_only_the_widgets_they_answer(client, services, widget):
    async with services.db.write() as session:
        other = await create_widget(session, {"name": "Blog"})
    _agent, token = await new_agent(services, "Cy Diaz", "cy@example.com", widget_ids=[other.id])
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("hello", "c1"))["conversation_id"]

    listed = await (await client.get("/console/api/conversations", headers=as_agent(token))).json()
    assert listed["items"] == []
    assert (await client.get(f"/console/api/conversations/{conv_id}/messages", headers=as_agent(token))).status == 404
    refused = await client.post(f"/console/api/conversations/{conv_id}/claim", json={}, headers=as_agent(token))
    assert refused.status == 404
    assert not [f for f in await console.frames_for(0.4) if f["type"] in {"message", "conversation"}]
    widgets = await (await client.get("/console/api/widgets", headers=as_agent(token))).json()
    assert [w["name"] for w in widgets["items"]] == ["Blog"]


async def test_list_pages_with_a_cursor(client, services, widget, ana):
    _agent, token = ana
    ids = []
    for n in range(3):
        visitor = await Visitor.connect(client, widget.key)
        ids.append((await visitor.say(f"hello {n}", f"c{n}"))["conversation_id"])
    first = await (await client.get("/console/api/conversations?limit=2", headers=as_agent(token))).json()
    assert [c["id"] for c in first["items"]] == [ids[2], ids[1]] and first["next_cursor"]
    rest = await (
        await client.get(f"/console/api/conversations?limit=2&before={first['next_cursor']}", headers=as_agent(token))
    ).json()
    assert [c["id"] for c in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    bad = await client.get("/console/api/conversations?status=maybe", headers=as_agent(token))
    assert bad.status == 422


async def test_console_assets_are_served_and_the_page_has_no_inline_script(client, ana):
    _agent, token = ana
    page = await (await client.get("/console", headers=as_agent(token))).text()
    assert '<script src="/console/static/console.js"' in page and "<script>" not in page and "style=" not in page
    for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        resp = await client.get(f"/console/static/{name}")
        assert resp.status == 200 and kind in resp.headers["Content-Type"]
        etag = resp.headers["ETag"]
        cached = await client.get(f"/console/static/{name}", headers={"If-None-Match": etag})
        assert cached.status == 304
    script = await (await client.get("/console/static/console.js")).text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert (await client.get("/console/static/nope.js")).status == 404


async def test_lines_edited_or_deleted_at_their_source_update_the_console(client, services, widget, ana):
    _agent, token = ana
    console = await ConsoleSocket.open(client, token)
    visitor = await Visitor.connect(client, widget.key)
    conv_id = (await visitor.say("hello", "c1"))["conversation_id"]
    resp = await client.post(f"/console/api/conversations/{conv_id}/messages", json={"text": "Helo"}, headers=as_agent(token))
    message_id = (await resp.json())["message"]["id"]

    await services.chat.edit_message(message_id, "Hello")
    edited = await console.next("message_update", lambda f: f["change"] == "edited")
    assert edited["message"]["id"] == message_id and edited["message"]["text"] == "Hello"
    await services.chat.delete_message(message_id)
    withdrawn = await console.next("message_update", lambda f: f["change"] == "withdrawn")
    assert withdrawn["message"]["internal"] is True


async def test_unknown_console_endpoints_and_bad_ids_answer_json(client, ana):
    _agent, token = ana
    missing = await client.get("/console/api/conversations/abc/messages", headers=as_agent(token))
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    nothing = await client.get("/console/api/conversations/999/messages", headers=as_agent(token))
    assert nothing.status == 404
    odd = await client.get("/console/api/conversations?before=%C2%B2", headers=as_agent(token))
    assert odd.status == 422
    wrong_method = await client.get("/console/api/duty", headers=as_agent(token))
    assert wrong_method.status == 405 and "error" in await wrong_method.json()
