"""The open console sockets of this process and the events routed to them.

One hub per application subscribes to the bus and the status watcher once;
each event is turned into a frame once and sent to every socket of an agent
who answers that widget. The console reloads its state over HTTP after a
reconnect, so a frame lost while a socket was down costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.console import views
from core import events as ev
from core.agents import agent_to_json, get_agent
from core.availability import WidgetStatus
from core.conversations import get_conversation
from core.errors import NotFound
from core.services import Services

log = logging.getLogger(__name__)

SIGNED_OUT = 4401  # close code: the session ended; the page shows the sign-in hint


@dataclass(eq=False)
class AgentSocket:
    ws: web.WebSocketResponse
    agent_id: int
    token_hash: str
    widget_ids: list[int] | None  # None = every widget

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the socket is going away; its handler cleans up

    async def close(self, code: int, message: bytes) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)


class ConsoleHub:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._sockets: set[AgentSocket] = set()
        bus = services.bus
        bus.subscribe(ev.MESSAGE_CREATED, self._on_message)
        bus.subscribe(ev.MESSAGE_UPDATED, self._on_message_change)
        bus.subscribe(ev.MESSAGE_DELETED, self._on_message_change)
        bus.subscribe(ev.CONVERSATION_UPDATED, self._on_conversation)
        bus.subscribe(ev.TYPING, self._on_typing)
        bus.subscribe(ev.AGENTS_CHANGED, self._on_agents)
        services.watcher.add_listener(self._on_status)

    # -- registry ---------------------------------------------------------
    def add(self, sock: AgentSocket) -> None:
        self._sockets.add(sock)

    def remove(self, sock: AgentSocket) -> None:
        self._sockets.discard(sock)

    @property
    def count(self) -> int:
        return len(self._sockets)

    def _serving(self, widget_id: int) -> list[AgentSocket]:
        return [s for s in self._sockets if views.serves(s.widget_ids, widget_id)]

    @staticmethod
    async def _broadcast(sockets: Iterable[AgentSocket], frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        for sock in list(sockets):
            await sock.send_text(text)

    # -- deliveries -------------------------------------------------------
    async def _on_message(self, _name: str, data: dict[str, Any]) -> None:
        """Every message, internal notes included: agents see the whole thread."""
        sockets = self._serving(data["widget_id"])
        if sockets:
            await self._broadcast(sockets, {"type": "message", "widget_id": data["widget_id"], "message": data["message"]})

    async def _on_message_change(self, name: str, data: dict[str, Any]) -> None:
        """A line edited or deleted where it was written (Slack, Teams): show the new state."""
        sockets = self._serving(data["widget_id"])
        if sockets:
            change = "withdrawn" if name == ev.MESSAGE_DELETED else "edited"
            frame = {"type": "message_update", "widget_id": data["widget_id"], "change": change, "message": data["message"]}
            await self._broadcast(sockets, frame)

    async def _on_conversation(self, _name: str, data: dict[str, Any]) -> None:
        sockets = self._serving(data["widget_id"])
        if not sockets:
            return
        try:
            async with self.services.db.read() as session:
                conversation = await views.summary(session, await get_conversation(session, data["conversation_id"]))
        except NotFound:
            return  # deleted meanwhile
        await self._broadcast(sockets, {"type": "conversation", "conversation": conversation})

    async def _on_typing(self, _name: str, data: dict[str, Any]) -> None:
        if data["from"] != "visitor":
            return
        frame = {
            "type": "typing",
            "conversation_id": data["conversation_id"],
            "widget_id": data["widget_id"],
            "from": data["from"],
            "active": data["active"],
        }
        await self._broadcast(self._serving(data["widget_id"]), frame)

    async def _on_agents(self, _name: str, data: dict[str, Any]) -> None:
        """Tell an agent's consoles about their own duty and availability."""
        agent_id = data.get("agent_id")
        ids = {s.agent_id for s in self._sockets if agent_id is None or s.agent_id == agent_id}
        for one in ids:
            await self.push_me(one)

    async def push_me(self, agent_id: int) -> None:
        sockets = [s for s in self._sockets if s.agent_id == agent_id]
        if not sockets:
            return
        try:
            async with self.services.db.read() as session:
                agent = await get_agent(session, agent_id)
        except NotFound:
            for sock in sockets:
                await sock.close(SIGNED_OUT, b"agent removed")
            return
        for sock in sockets:
            sock.widget_ids = agent.widget_ids
        await self._broadcast(sockets, {"type": "me", "agent": agent_to_json(agent)})

    async def _on_status(self, widget_id: int, key: str, status: WidgetStatus) -> None:
        frame = {"type": "status", "widget_id": widget_id, "key": key, **status.to_json()}
        await self._broadcast(self._serving(widget_id), frame)

    # -- sign-out and shutdown -------------------------------------------
    async def close_session(self, token_hash: str) -> None:
        closing = [s.close(SIGNED_OUT, b"signed out") for s in self._sockets if s.token_hash == token_hash]
        await asyncio.gather(*closing, return_exceptions=True)

    async def close_all(self) -> None:
        """Ask every console to reconnect (to another process) and close."""
        closing = [s.close(1012, b"server restarting") for s in self._sockets]
        await asyncio.gather(*closing, return_exceptions=True)
