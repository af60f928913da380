"""The open visitor sockets of this process and the events routed to them.

Events arrive from the bus (which, with Redis, carries them from any
process). Message frames are delivered strictly in ``seq`` order and never
twice: a socket that sees a gap reads the missing messages from the database,
the truth, before going on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.widget.open_conversations import OpenConversations
from core import events as ev
from core.availability import WidgetStatus
from core.conversations import conversation_last_seq, message_frame, messages_after
from core.models import Widget
from core.services import Services
from core.widgets import get_widget_by_key

log = logging.getLogger(__name__)
# Widgets by key are kept this long; WIDGET_CHANGED on the bus drops them at once.
WIDGET_TTL_S = 5.0
# At shutdown, how long to wait for a widget to answer our close frame. It has the
# reconnect frame and the close frame by then; a slow reply only delays the restart.
CLOSE_WAIT_S = 1.0


@dataclass(eq=False)
class VisitorSocket:
    ws: web.WebSocketResponse
    widget_id: int
    visitor_id: str
    ip: str
    conversation_id: int | None = None
    last_seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the socket is going away; its handler cleans up


class WidgetHub:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._by_widget: dict[int, set[VisitorSocket]] = defaultdict(set)
        self._by_visitor: dict[tuple[int, str], set[VisitorSocket]] = defaultdict(set)
        self._per_ip: dict[str, int] = defaultdict(int)
        self._widgets: dict[str, tuple[float, Widget]] = {}  # key -> (fresh until, widget)
        self._widget_loads: dict[str, asyncio.Future[Widget]] = {}  # lookups in flight, shared
        # MESSAGE_CREATED events seen: a joining socket compares it before and after its
        # read to know whether a message may have slipped in between (socket._welcome).
        self.message_events = 0
        # Returning visitors' open conversations, read in batches on one connection of its
        # own (in a reconnect storm, one round trip answers every hello waiting).
        self.open_conversations = OpenConversations(services.db)
        bus = services.bus
        bus.subscribe(ev.MESSAGE_CREATED, self._on_message)
        bus.subscribe(ev.CONVERSATION_UPDATED, self._on_conversation)
        bus.subscribe(ev.TYPING, self._on_typing)
        bus.subscribe(ev.MESSAGE_UPDATED, self._on_message_change)
        bus.subscribe(ev.MESSAGE_DELETED, self._on_message_change)
        bus.subscribe(ev.RESYNC, self._on_resync)
        bus.subscribe(ev.WIDGET_CHANGED, self._on_widget_changed)
        services.watcher.add_listener(self.push_status)

    # -- registry ---------------------------------------------------------
    async def widget(self, key: str) -> Widget:
        """The widget with this public key (NotFound if none), cached for WIDGET_TTL_S.

        Every socket opening needs it: 10,000 widgets reconnecting after a
        restart would otherwise read the same row 10,000 times. A change
        published on the bus (from any process) drops the cache at once; the
        TTL bounds staleness for changes made without the bus.
        """
        hit = self._widgets.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        load = self._widget_loads.get(key)
        if load is None:  # one read for every socket asking at once (a reconnect storm)
            load = asyncio.ensure_future(self._load_widget(key))
            self._widget_loads[key] = load
            load.add_done_callback(lambda _done: self._widget_loads.pop(key, None))
        return await asyncio.shield(load)

    async def _load_widget(self, key: str) -> Widget:
        async with self.services.db.read() as session:
            widget = await get_widget_by_key(session, key)  # unknown keys are not cached
        self._widgets[key] = (time.monotonic() + WIDGET_TTL_S, widget)
        return widget

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def add(self, sock: VisitorSocket) -> None:
        self._by_widget[sock.widget_id].add(sock)
        self._by_visitor[(sock.widget_id, sock.visitor_id)].add(sock)
        self._per_ip[sock.ip] += 1

    def remove(self, sock: VisitorSocket) -> None:
        self._discard(self._by_widget, sock.widget_id, sock)
        self._discard(self._by_visitor, (sock.widget_id, sock.visitor_id), sock)
        self._per_ip[sock.ip] -= 1
        if self._per_ip[sock.ip] <= 0:
            del self._per_ip[sock.ip]

    @staticmethod
    def _discard(index: dict[Any, set[VisitorSocket]], key: Any, sock: VisitorSocket) -> None:
        group = index.get(key)
        if group is not None:
            group.discard(sock)
            if not group:
                del index[key]

    @property
    def count(self) -> int:
        return sum(len(s) for s in self._by_widget.values())

    def all_sockets(self) -> list[VisitorSocket]:
        return [s for group in self._by_widget.values() for s in group]

    # -- deliveries -------------------------------------------------------
    async def push_status(self, widget_id: int, _key: str, status: WidgetStatus) -> None:
        sockets = self._by_widget.get(widget_id)
        if not sockets:
            return
        text = json.dumps({"type": "status", **status.to_json()}, separators=(",", ":"))
        for sock in list(sockets):
            await sock.send_text(text)

    async def _on_message(self, _name: str, data: dict[str, Any]) -> None:
        self.message_events += 1
        sockets = self._by_visitor.get((data["widget_id"], data.get("visitor_id", "")), set())
        for sock in list(sockets):
            await self.deliver(sock, data["conversation_id"], data["seq"], data["internal"], data["frame"])

    async def deliver(
        self, sock: VisitorSocket, conversation_id: int, seq: int, internal: bool, frame: dict[str, Any]
    ) -> None:
        async with sock.lock:
            if sock.conversation_id is None:
                sock.conversation_id, sock.last_seq = conversation_id, 0
            if sock.conversation_id != conversation_id or seq <= sock.last_seq:
                return
            if seq == sock.last_seq + 1:
                if not internal:
                    await sock.send(frame)
            else:
                await self._fill_gap(sock, conversation_id, up_to=seq)
            sock.last_seq = seq

    async def _fill_gap(self, sock: VisitorSocket, conversation_id: int, up_to: int) -> None:
        async with self.services.db.read() as session:
            missing = await messages_after(session, conversation_id, sock.last_seq, up_to_seq=up_to)
        for message in missing:
            await sock.send(message_frame(message))

    async def _on_message_change(self, _name: str, data: dict[str, Any]) -> None:
        """An agent edited or deleted a line: ``message_update`` / ``message_delete`` frames.

        Only sockets that already got the message (its seq) are told; a
        socket still behind reads the current text from the database.
        """
        if data.get("internal"):
            return
        frame = data["frame"]
        for sock in list(self._by_visitor.get((data["widget_id"], data.get("visitor_id", "")), ())):
            async with sock.lock:
                if sock.conversation_id == data["conversation_id"] and frame["seq"] <= sock.last_seq:
                    await sock.send(frame)

    async def _on_conversation(self, _name: str, data: dict[str, Any]) -> None:
        conv = data["conversation"]
        if conv["status"] != "closed":
            return
        for sock in list(self._by_visitor.get((conv["widget_id"], conv["visitor_id"]), ())):
            async with sock.lock:
                if sock.conversation_id == conv["id"]:
                    sock.conversation_id, sock.last_seq = None, 0
                    await sock.send({"type": "conversation", "conversation_id": conv["id"], "state": "closed"})

    async def _on_typing(self, _name: str, data: dict[str, Any]) -> None:
        if data["from"] == "visitor":
            return
        frame = {"type": "typing", "from": data["from"], "author": data["author"], "active": data["active"]}
        for sock in list(self._by_widget.get(data["widget_id"], ())):
            if sock.conversation_id == data["conversation_id"]:
                await sock.send(frame)

    async def _on_widget_changed(self, _name: str, data: dict[str, Any]) -> None:
        """Texts, colours or position changed: open widgets re-read their config."""
        self._widgets.clear()
        for sock in list(self._by_widget.get(data.get("widget_id", -1), ())):
            await sock.send_text('{"type":"config"}')

    async def _on_resync(self, _name: str, _data: dict[str, Any]) -> None:
        """Events may have been missed (the bus reconnected): catch every socket up from the database."""
        self._widgets.clear()  # widget changes may have been missed too
        for sock in self.all_sockets():
            async with sock.lock:
                if sock.conversation_id is None:
                    continue
                async with self.services.db.read() as session:
                    last = await conversation_last_seq(session, sock.conversation_id)
                if last > sock.last_seq:
                    await self._fill_gap(sock, sock.conversation_id, up_to=last)
                    sock.last_seq = last

    async def close_all(self) -> None:
        """Ask every widget to reconnect (to another process) and close.

        All sockets at once: each close waits for the browser's close frame,
        and 10,000 of those one after another took ~8 s (the whole shutdown
        timeout) while the widgets already told kept backing off further; and
        none waits more than CLOSE_WAIT_S (the restart waits for the slowest).
        """
        await asyncio.gather(*(self._close(sock) for sock in self.all_sockets()), return_exceptions=True)
        await self.open_conversations.close()  # its connection goes back before the engine is disposed

    @staticmethod
    async def _close(sock: VisitorSocket) -> None:
        await sock.send({"type": "reconnect"})
        try:
            await asyncio.wait_for(sock.ws.close(code=1012, message=b"server restarting"), CLOSE_WAIT_S)
        except asyncio.TimeoutError:
            pass  # sent; the connection is dropped without the browser's reply
