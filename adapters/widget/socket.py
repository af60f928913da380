"""The visitor WebSocket: ``GET /widget/{key}/ws``.

Protocol (JSON frames with ``type``): the client opens with ``hello``
(its signed token and the last ``seq`` it saw); the server answers
``welcome`` and replays what the client missed; ``message`` frames from the
client are acknowledged with ``ack`` only after they are committed.

A frame that fails on our side (the database or Redis failing or timing out)
is answered with an ``error`` frame of code ``unavailable`` carrying its
``client_id``, and the socket stays open: nothing was acknowledged, so the
widget sends it again. A welcome that fails closes the socket with 1013 (try
again later) and the widget reconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from adapters.http import client_ip, error_response, services
from adapters.widget.hub import VisitorSocket, WidgetHub
from adapters.widget.open_conversations import OpenConversation
from adapters.widget.origins import origin_allowed
from core.conversations import VisitorContext, conversation_last_seq, message_frame, messages_after
from core.errors import DomainError, NotFound
from core.models import Conversation, Message, Widget
from core.ratelimit import SlidingWindow

log = logging.getLogger(__name__)

HUB = web.AppKey("widget_hub", WidgetHub)
HELLO_TIMEOUT_S = 15
HEARTBEAT_S = 30
# Error code of a frame that failed on our side (database, Redis): retry it later; widget.js
# keeps the message and sends it again with the same client_id.
UNAVAILABLE = "unavailable"
# A typing frame repeating the state published for this socket less than this long ago is
# dropped: widget.js sends one every 3 s at most, so only a runaway client is slowed down.
TYPING_REPEAT_S = 1.0


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _field(frame: dict[str, Any], name: str, kind: type, max_len: int = 2000) -> Any:
    value = frame.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise FrameError("bad_frame", f"{name} has the wrong type")
    if isinstance(value, str):
        return value[:max_len]
    return value


def _context(hello: dict[str, Any]) -> VisitorContext:
    return VisitorContext(
        page_url=_field(hello, "page_url", str, 2000),
        page_title=_field(hello, "page_title", str, 500),
        language=_field(hello, "language", str, 35),
        timezone=_field(hello, "timezone", str, 64),
    )


def _parse(raw: str) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError as exc:
        raise FrameError("bad_frame", "frames must be JSON objects") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("bad_frame", "frames must be JSON objects with a type")
    return frame


class VisitorSession:
    """One open socket: its handshake, replay and the frames it sends."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, widget: Widget) -> None:
        self.request = request
        self.ws = ws
        self.widget = widget
        self.svc = services(request)
        self.hub = request.app[HUB]
        self.ip = client_ip(request)
        self.sock: VisitorSocket | None = None
        self.context = VisitorContext()
        self._sent = SlidingWindow(60)  # this connection's lines, for its own rate limit

    async def run(self) -> None:
        hello = await self._receive_hello()
        if hello is None:
            return
        try:
            try:
                await self._welcome(hello)
            except Exception:  # the database failed or timed out: the widget comes back later
                log.exception("widget %s: welcome failed; the socket is closed with 1013 (try again later)", self.widget.id)
                await self._error(UNAVAILABLE, "The chat is unavailable for a moment; reconnecting.")
                await self.ws.close(code=1013, message=b"try again later")
                return
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._error("bad_frame", "send text frames")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if self.sock is not None:
                self.hub.remove(self.sock)

    async def _receive_hello(self) -> dict[str, Any] | None:
        try:
            msg = await self.ws.receive(timeout=HELLO_TIMEOUT_S)
        except asyncio.TimeoutError:
            await self.ws.close(code=4408, message=b"no hello")
            return None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            frame = _parse(msg.data)
            if frame["type"] != "hello":
                raise FrameError("bad_frame", "the first frame must be hello")
            self.context = _context(frame)
            return frame
        except FrameError as exc:
            await self._error(exc.code, exc.message)
            await self.ws.close(code=4400, message=b"bad hello")
            return None

    async def _welcome(self, hello: dict[str, Any]) -> None:
        token = hello.get("token")
        visitor_id = self.svc.visitor_tokens.verify(token)
        returning = visitor_id is not None
        if visitor_id is None:
            # No stored record: a visitor who never writes leaves nothing behind.
            visitor_id, token = self.svc.visitor_tokens.issue()
        events_before = self.hub.message_events
        conv: OpenConversation | None = None
        if returning:  # a visitor id issued just now has no conversation: no query
            # Batched with the hellos arriving at the same time (one query for many in a storm).
            conv = await self.hub.open_conversations.get(self.widget.id, visitor_id)
        resume_after = hello.get("resume_after")
        if not isinstance(resume_after, int) or isinstance(resume_after, bool) or resume_after < 0:
            resume_after = 0
        if conv is None or hello.get("conversation_id") != conv.id:
            resume_after = 0
        self.sock = VisitorSocket(self.ws, self.widget.id, visitor_id, self.ip)
        async with self.sock.lock:  # events arriving during the replay wait here
            self.hub.add(self.sock)
            status = await self.svc.watcher.status_of(self.widget)
            await self.sock.send(
                {
                    "type": "welcome",
                    "token": token,
                    "visitor_id": visitor_id,
                    "conversation_id": conv.id if conv else None,
                    "status": status.to_json(),
                }
            )
            if conv is not None:
                self.sock.conversation_id = conv.id
                self.sock.last_seq = resume_after
                # Nothing after resume_after when we read, and no message event since (one
                # could have been missed before the socket joined the hub): nothing to replay.
                # This keeps a reconnect, the common case, to one query.
                if conv.last_seq > resume_after or self.hub.message_events != events_before:
                    await self._replay(conv.id)

    async def _replay(self, conversation_id: int) -> None:
        """Send what the client missed. Called once the socket is in the hub, so anything
        committed after these reads reaches it as an event (held by the socket's lock)."""
        assert self.sock is not None
        while True:
            async with self.svc.db.read() as session:
                # last_seq first: every message up to it is then in the batch (on PostgreSQL
                # each statement sees newer commits), and a client that is up to date, as
                # after most reconnects, costs one small query.
                last_seq = await conversation_last_seq(session, conversation_id)
                if last_seq <= self.sock.last_seq:
                    return
                batch = await messages_after(session, conversation_id, self.sock.last_seq, limit=500)
            for message in batch:
                await self.sock.send({**message_frame(message), "replay": True})
            if len(batch) < 500:
                self.sock.last_seq = max(self.sock.last_seq, last_seq, batch[-1].seq if batch else 0)
                return
            self.sock.last_seq = batch[-1].seq

    async def _on_text(self, raw: str) -> None:
        frame: dict[str, Any] | None = None
        try:
            frame = _parse(raw)
            kind = frame["type"]
            if kind == "message":
                await self._on_message(frame)
            elif kind == "typing":
                await self._on_typing(frame)
            elif kind == "ping":
                await self._send({"type": "pong"})
            else:
                raise FrameError("bad_frame", f"unknown frame type {kind[:40]!r}")
        except (FrameError, DomainError) as exc:
            await self._error(exc.code, exc.message, client_id=frame.get("client_id") if frame else None)
        except Exception:
            # A database error or timeout, Redis away...: this frame fails, the socket stays.
            # Nothing was acknowledged, so the widget sends the message again (same client_id,
            # never stored twice); were it committed before the failure, the resend is acked.
            log.exception("widget %s: a %r frame failed; answered with an error frame", self.widget.id,
                          str(frame.get("type"))[:40] if frame else None)
            await self._error(UNAVAILABLE, "Something went wrong on our side; try again in a moment.",
                              client_id=frame.get("client_id") if frame else None)

    async def _on_message(self, frame: dict[str, Any]) -> None:
        assert self.sock is not None
        client_id = _field(frame, "client_id", str, 64)
        limits = self.svc.limits
        # The connection's own limit first, here: it needs no round trip, and a line it
        # refuses is not counted under the IP, which every process shares (in Redis).
        wait = self._sent.wait(limits.messages_per_connection_per_minute)
        if wait is None:
            wait = await self.svc.rate_limiter.hit(f"ws-ip:{self.ip}", limits.messages_per_ip_per_minute, 60)
        if wait is not None:
            raise FrameError("rate_limited", f"You're sending messages too fast; try again in {int(wait) + 1} s.")
        self._sent.count()
        sock = self.sock

        async def ack(conv: Conversation, message: Message) -> None:  # committed: acked before it is announced
            await sock.send(
                {"type": "ack", "client_id": client_id, "id": message.id, "seq": message.seq, "conversation_id": conv.id}
            )

        await self.svc.chat.visitor_message(
            self.widget, sock.visitor_id, frame.get("text"), client_id=client_id, context=self.context, stored=ack
        )

    async def _on_typing(self, frame: dict[str, Any]) -> None:
        """Typing in the socket's open conversation, published without a database read.

        The socket knows its conversation: the one found for this visitor at
        the welcome, or the one its own visitor's messages arrive in (events are
        routed by visitor), and it forgets it when the conversation closes (the
        close event, or a resync that finds it closed). No conversation, or a
        ``conversation_id`` in the frame that is not the socket's: ignored, as
        typing before the first message always was.
        """
        sock = self.sock
        assert sock is not None
        conversation_id = sock.conversation_id
        if conversation_id is None:
            return
        claimed = frame.get("conversation_id")
        if claimed is not None and claimed != conversation_id:
            return
        active = bool(frame.get("active"))
        now = asyncio.get_running_loop().time()
        last = sock.typing_sent
        if last is not None and last[0] == active and now - last[1] < TYPING_REPEAT_S:
            return
        sock.typing_sent = (active, now)
        # Only the ids are read from it: no row is loaded and no session is involved.
        conv = Conversation(id=conversation_id, widget_id=sock.widget_id)
        await self.svc.chat.typing(conv, "visitor", None, active)

    async def _error(self, code: str, message: str, client_id: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(client_id, str):
            frame["client_id"] = client_id
        await self._send(frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.sock is not None:
            await self.sock.send(frame)
        elif not self.ws.closed:
            await self.ws.send_str(json.dumps(frame))


async def widget_socket(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    hub = request.app[HUB]
    try:
        widget = await hub.widget(request.match_info["key"])
    except NotFound:
        return error_response(404, "not_found", "unknown widget key")
    except Exception:  # the database failed or timed out; the widget retries with backoff
        log.exception("widget socket: reading the widget failed")
        return error_response(503, UNAVAILABLE, "the chat is unavailable for a moment; try again")
    if not origin_allowed(widget, request.headers.get("Origin")):
        return error_response(403, "origin_not_allowed", "this page's origin may not use this widget")
    if hub.connections_from(client_ip(request)) >= svc.limits.connections_per_ip:
        return error_response(429, "too_many_connections", "too many open chat connections from your address")
    ws = web.WebSocketResponse(
        compress=False,  # permessage-deflate costs ~88 KB per idle socket
        max_msg_size=svc.limits.max_frame_bytes,
        heartbeat=HEARTBEAT_S,
    )
    await ws.prepare(request)
    await VisitorSession(request, ws, widget).run()
    return ws
