"""The browser agent console at ``/console``: sign-in, the page, its JSON API.

Pages:  ``GET /console`` (the app, or a sign-in hint), ``GET /console/login?token=``
(a sign-in link: sets the session cookie, 303 to ``/console``),
``GET /console/static/{console.js,console.css}``, WebSocket ``GET /console/ws``.

API (cookie auth, JSON; POSTs must be ``application/json`` from this site):
``GET me``, ``POST duty {"on_duty"}``, ``POST stay {"stay_available"}``,
``GET widgets``, ``GET conversations?status=open|closed&before=ID&limit=N``,
``GET conversations/{id}``, ``GET conversations/{id}/messages``,
``POST conversations/{id}/messages {"text"}``, ``POST conversations/{id}/claim``,
``POST conversations/{id}/close``, ``POST conversations/{id}/typing {"active"}``,
``POST logout``. Every change goes through ``services.chat``, which stores it,
marks the agent seen and publishes the event the sockets deliver.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.console import views
from adapters.console.auth import (
    clear_session_cookie,
    current_agent,
    forgery_refusal,
    is_https,
    session_token,
    set_session_cookie,
    signed_in,
    state_changing,
)
from adapters.console.hub import ConsoleHub
from adapters.console.socket import CONSOLE_HUB, console_socket
from adapters.http import SERVICES, read_json, services
from core.agents import agent_for_token, agent_to_json, get_agent, issue_token, revoke_token
from core.conversations import get_conversation, message_to_json
from core.errors import NotFound, Unauthorized, ValidationFailed
from core.models import Agent, Conversation
from core.tokens import hash_secret

STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "application/javascript", "console.css": "text/css"}
CONV = r"/console/api/conversations/{id:\d{1,18}}"
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,300}$")


# -- headers -----------------------------------------------------------------
def content_security_policy(request: web.Request) -> str:
    connect = "'self'"
    if _HOST.match(request.host):  # older Safari does not count ws(s): as 'self'
        connect += f" {'wss' if is_https(request) else 'ws'}://{request.host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"connect-src {connect}; img-src 'self' https: data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path != "/console" and not request.path.startswith("/console/"):
        return
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(request))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")  # a sign-in link must not leak onward
    headers.setdefault("Cache-Control", "no-store")


# -- pages -------------------------------------------------------------------
def _paragraph(text: str) -> str:
    """Escaped text with `backticks` shown as code."""
    return "<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text)) + "</p>"


def notice_page(status: int, title: str, *paragraphs: str, refresh: bool = False) -> web.Response:
    """A small standalone page (no scripts) for sign-in problems."""
    meta = '<meta http-equiv="refresh" content="0">' if refresh else ""
    body = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{html.escape(title)} · deskbell</title>"
        '<link rel="stylesheet" href="/console/static/console.css"></head>'
        '<body class="notice-page"><main class="notice">'
        '<div class="brand"><span class="brand-dot" aria-hidden="true"></span>deskbell</div>'
        f"<h1>{html.escape(title)}</h1>{''.join(_paragraph(p) for p in paragraphs)}"
        "</main></body></html>\n"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def not_signed_in_page() -> web.Response:
    return notice_page(
        401,
        "Sign in to the deskbell console",
        "Open the sign-in link you were given. Links work for 7 days and can be used again on any browser.",
        "No link, or it has expired? Ask whoever runs deskbell to print a new one with "
        "`deskbell agent link EMAIL`.",
    )


class ConsolePages:
    def __init__(self) -> None:
        self.html = (STATIC / "console.html").read_bytes()
        self.assets: dict[str, tuple[bytes, str, str]] = {}
        for name, kind in ASSETS.items():
            body = (STATIC / name).read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self.assets[name] = (body, kind, etag)

    async def console(self, request: web.Request) -> web.Response:
        token = session_token(request)
        if token is None and request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            # Arriving from a link in mail or chat: the browser holds back a
            # SameSite=Strict cookie on this navigation. Reload from here, same-site.
            return notice_page(200, "Signing you in…", "One moment…", refresh=True)
        try:
            await current_agent(request)
        except Unauthorized:
            response = not_signed_in_page()
            if token is not None:
                clear_session_cookie(response)
            return response
        return web.Response(body=self.html, content_type="text/html", charset="utf-8")

    async def asset(self, request: web.Request) -> web.Response:
        found = self.assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=headers)


async def login(request: web.Request) -> web.Response:
    """A sign-in link: trade the reusable login token for a 30-day session cookie."""
    try:
        async with services(request).db.write() as session:
            agent = await agent_for_token(session, request.query.get("token"), "login")
            token = await issue_token(session, agent, "session")
    except (Unauthorized, NotFound):
        return notice_page(
            401,
            "This sign-in link doesn't work",
            "It may have expired (links last 7 days), been mistyped, or belong to an agent who was removed.",
            "Ask whoever runs deskbell for a new link: `deskbell agent link EMAIL`.",
        )
    response = web.Response(status=303, headers={"Location": "/console"})
    set_session_cookie(request, response, token)
    return response


# -- API ---------------------------------------------------------------------
def _field(data: Any, name: str, check: type) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(name), check):
        kind = "true or false" if check is bool else "a string"
        raise ValidationFailed.of({name: f"must be {kind}"})
    return data[name]


def _conversation_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _visible(request: web.Request, agent: Agent) -> Conversation:
    async with services(request).db.read() as session:
        return await views.visible_conversation(session, agent, _conversation_id(request))


async def _summary(request: web.Request, conversation_id: int) -> dict[str, Any]:
    async with services(request).db.read() as session:
        return await views.summary(session, await get_conversation(session, conversation_id))


@signed_in
async def api_me(request: web.Request, agent: Agent) -> web.Response:
    return web.json_response(agent_to_json(agent))


@state_changing
async def api_duty(request: web.Request, agent: Agent) -> web.Response:
    on_duty = _field(await read_json(request), "on_duty", bool)
    updated = await services(request).chat.set_duty(agent.id, on_duty)
    return web.json_response(agent_to_json(updated))


@state_changing
async def api_stay(request: web.Request, agent: Agent) -> web.Response:
    stay = _field(await read_json(request), "stay_available", bool)
    chat = services(request).chat
    await chat.update_agent(agent.id, {"stay_available": stay})
    await chat.agent_seen(agent.id)  # flipping a switch is an action too
    async with services(request).db.read() as session:
        return web.json_response(agent_to_json(await get_agent(session, agent.id)))


@signed_in
async def api_widgets(request: web.Request, agent: Agent) -> web.Response:
    svc = services(request)
    async with svc.db.read() as session:
        widgets = await views.widgets_for_agent(session, agent)
    items = [
        {
            "id": w.id,
            "key": w.key,
            "name": w.name,
            "enabled": w.enabled,
            "status": (await svc.watcher.status_of(w)).to_json(),
        }
        for w in widgets
    ]
    return web.json_response({"items": items, "next_cursor": None})


def _int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ValidationFailed.of({name: f"must be a whole number from {lo} to {hi}"})
    return int(raw)


@signed_in
async def api_conversations(request: web.Request, agent: Agent) -> web.Response:
    status = request.query.get("status", "open")
    if status not in {"open", "closed"}:
        raise ValidationFailed.of({"status": "must be open or closed"})
    before = _int_param(request, "before", None, 1, 2**62)
    limit = _int_param(request, "limit", 100, 1, 200)
    assert limit is not None
    async with services(request).db.read() as session:
        items, next_cursor = await views.list_for_agent(
            session, agent, status=status, before_id=before, limit=limit
        )
    return web.json_response({"items": items, "next_cursor": str(next_cursor) if next_cursor else None})


@signed_in
async def api_conversation(request: web.Request, agent: Agent) -> web.Response:
    async with services(request).db.read() as session:
        conv = await views.visible_conversation(session, agent, _conversation_id(request))
        return web.json_response(await views.summary(session, conv))


@signed_in
async def api_messages(request: web.Request, agent: Agent) -> web.Response:
    async with services(request).db.read() as session:
        conv = await views.visible_conversation(session, agent, _conversation_id(request))
        summary = await views.summary(session, conv)
        messages = await views.all_messages(session, conv.id)
    items = [message_to_json(m) for m in messages]
    return web.json_response({"conversation": summary, "items": items, "next_cursor": None})


@state_changing
async def api_post_message(request: web.Request, agent: Agent) -> web.Response:
    """A reply; ``note:``/``!`` lines stay internal and ``!close`` closes (core's rule)."""
    text = _field(await read_json(request), "text", str)
    conv = await _visible(request, agent)
    message = await services(request).chat.agent_message(conv.id, text, agent_id=agent.id)
    body = {
        "message": message_to_json(message) if message is not None else None,
        "conversation": await _summary(request, conv.id),
    }
    return web.json_response(body, status=201 if message is not None else 200)


@state_changing
async def api_claim(request: web.Request, agent: Agent) -> web.Response:
    conv = await _visible(request, agent)
    await services(request).chat.claim(conv.id, agent.id)
    return web.json_response(await _summary(request, conv.id))


@state_changing
async def api_close(request: web.Request, agent: Agent) -> web.Response:
    conv = await _visible(request, agent)
    await services(request).chat.close(conv.id, agent.id)
    return web.json_response(await _summary(request, conv.id))


@state_changing
async def api_typing(request: web.Request, agent: Agent) -> web.Response:
    active = _field(await read_json(request), "active", bool)
    conv = await _visible(request, agent)
    if conv.status == "open":
        await services(request).chat.typing(conv, "agent", agent.name, active)
    return web.Response(status=204)


async def api_logout(request: web.Request) -> web.Response:
    """End this browser's session (and close its live sockets in this process)."""
    refusal = forgery_refusal(request)
    if refusal is not None:
        return refusal
    token = session_token(request)
    if token is not None:
        async with services(request).db.write() as session:
            await revoke_token(session, token)
        await request.app[CONSOLE_HUB].close_session(hash_secret(token))
    response = web.json_response({"signed_out": True})
    clear_session_cookie(response)
    return response


async def _close_consoles(app: web.Application) -> None:
    await app[CONSOLE_HUB].close_all()


def setup_console_routes(app: web.Application) -> None:
    app[CONSOLE_HUB] = ConsoleHub(app[SERVICES])
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_consoles)
    pages = ConsolePages()
    router = app.router
    router.add_get("/console", pages.console)
    router.add_get("/console/", _to_console)
    router.add_get("/console/login", login)
    router.add_get("/console/static/{name}", pages.asset)
    router.add_get("/console/ws", console_socket)
    api = "/console/api"
    router.add_get(f"{api}/me", api_me)
    router.add_post(f"{api}/duty", api_duty)
    router.add_post(f"{api}/stay", api_stay)
    router.add_post(f"{api}/logout", api_logout)
    router.add_get(f"{api}/widgets", api_widgets)
    router.add_get(f"{api}/conversations", api_conversations)
    router.add_get(CONV, api_conversation)
    router.add_get(f"{CONV}/messages", api_messages)
    router.add_post(f"{CONV}/messages", api_post_message)
    router.add_post(f"{CONV}/claim", api_claim)
    router.add_post(f"{CONV}/close", api_close)
    router.add_post(f"{CONV}/typing", api_typing)


async def _to_console(_request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console"})
