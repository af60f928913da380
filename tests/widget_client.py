"""A small visitor-side client of the widget WebSocket protocol, for tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse


class Visitor:
    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []  # everything received, in order
        self.backlog: list[dict[str, Any]] = []  # received but not yet returned by next()

    @classmethod
    async def connect(cls, client, key: str, **hello: Any) -> "Visitor":  # type: ignore[no-untyped-def]
        ws = await client.ws_connect(f"/widget/{key}/ws")
        visitor = cls(ws)
        frame = {"type": "hello", "token": None, "conversation_id": None, "resume_after": 0, **hello}
        await ws.send_str(json.dumps(frame))
        visitor.welcome = await visitor.next("welcome")
        return visitor

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def say(self, text: str, client_id: str) -> dict[str, Any]:
        await self.send(type="message", client_id=client_id, text=text)
        return await self.next("ack", "error")

    async def next(self, *types: str, timeout: float = 3.0) -> dict[str, Any]:
        """The oldest unreturned frame of one of ``types``; frames of other types wait in the backlog."""
        for i, frame in enumerate(self.backlog):
            if not types or frame["type"] in types:
                return self.backlog.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type.name != "TEXT":
                    raise AssertionError(f"socket ended: {msg.type.name} {msg.data!r}")
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if not types or frame["type"] in types:
                    return frame
                self.backlog.append(frame)

    async def quiet(self, timeout: float = 0.3) -> list[dict[str, Any]]:
        """Unreturned frames plus those arriving within ``timeout`` (to prove nothing more is sent)."""
        got: list[dict[str, Any]] = self.backlog
        self.backlog = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.ws.receive()
                    if msg.type.name != "TEXT":
                        return got
                    got.append(json.loads(msg.data))
        except TimeoutError:
            return got

    async def close(self) -> None:
        await self.ws.close()
