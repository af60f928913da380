"""The console WebSocket: ``GET /console/ws``.

Server frames (JSON with ``type``): ``me`` (the agent, on connect and after
every change to them), ``message`` (every message, notes included),
``message_update`` (a line edited or withdrawn at its source), ``conversation`` (a conversation opened, claimed or closed), ``typing`` (the
visitor types), ``status`` (a widget went online or offline), ``error``.
Client frames: ``heartbeat`` every 30 s while the page is open and visible,
which counts as the agent being seen and keeps their session alive;
``ping`` (answered with ``pong``).
"""

from __future__ import annotations

import json
import time
from aiohttp import WSMsgType, web

from adapters.console.auth import current_agent, same_origin, session_token
from adapters.console.hub import SIGNED_OUT, AgentSocket, ConsoleHub
from adapters.http import error_response, services
from core.agents import agent_to_json
from core.errors import NotFound, Unauthorized
from core.tokens import hash_secret

CONSOLE_HUB = web.AppKey("console_hub", ConsoleHub)
HEARTBEAT_S = 30  # protocol-level ping, so dead connections are noticed
CLOSE_TIMEOUT_S = 5.0  # a sign-out waits at most this long for the browser's close reply
MIN_SEEN_INTERVAL_S = 10.0  # more frequent heartbeats are accepted but not written
MAX_FRAME_BYTES = 4096


class ConsoleSession:
    def __init__(self, request: web.Request, sock: AgentSocket) -> None:
        self.request = request
        self.sock = sock
        self.svc = services(request)
        self._last_seen = 0.0

    async def run(self) -> None:
        async for msg in self.sock.ws:
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break

    async def _on_text(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("bad_frame", "frames must be JSON objects with a type")
            return
        kind = frame["type"]
        if kind == "heartbeat":
            await self._heartbeat()
        elif kind == "ping":
            await self.sock.send({"type": "pong"})
        else:
            await self._error("bad_frame", f"unknown frame type {kind[:40]!r}")

    async def _heartbeat(self) -> None:
        """The page is open and visible: the agent is here (if still signed in)."""
        now = time.monotonic()
        if now - self._last_seen < MIN_SEEN_INTERVAL_S:
            return
        self._last_seen = now
        try:
            agent = await current_agent(self.request)
            await self.svc.chat.agent_seen(agent.id)
        except (Unauthorized, NotFound):
            await self.sock.close(SIGNED_OUT, b"signed out")

    async def _error(self, code: str, message: str) -> None:
        await self.sock.send({"type": "error", "code": code, "message": message})


async def console_socket(request: web.Request) -> web.StreamResponse:
    if not same_origin(request):
        return error_response(403, "cross_site_request", "this connection did not come from the console page")
    try:
        agent = await current_agent(request)
    except Unauthorized as exc:
        return error_response(401, exc.code, exc.message)
    token = session_token(request)
    assert token is not None
    ws = web.WebSocketResponse(
        compress=False, heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES, timeout=CLOSE_TIMEOUT_S
    )
    await ws.prepare(request)
    hub = request.app[CONSOLE_HUB]
    sock = AgentSocket(ws, agent.id, hash_secret(token), agent.widget_ids)
    hub.add(sock)
    try:
        await sock.send({"type": "me", "agent": agent_to_json(agent)})
        await ConsoleSession(request, sock).run()
    finally:
        hub.remove(sock)
    return ws

