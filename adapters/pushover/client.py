"""Pushover pushes: ``POST {PUSHOVER_API_URL}/1/messages.json`` per agent.

Pushover answers 4xx for requests it will never accept (an invalid user key,
a revoked app token): those are permanent, since retrying cannot help. 429
means the app's monthly quota is used up, and 5xx or no answer are retried.
``PUSHOVER_API_URL`` exists so tests (and proxies) can stand in for the API.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from core.db import Database
from core.dispatch import Dispatcher
from core.links import absolute
from core.models import OutboxItem
from core.outbox import Outcome
from core.pushover import KIND, user_key_of

DEFAULT_API_URL = "https://api.pushover.net"
TIMEOUT_S = 15.0


class PushoverDeliveries:
    def __init__(self, db: Database, *, token: str, base_url: str, api_url: str = DEFAULT_API_URL) -> None:
        self.db = db
        self.token = token
        self.base_url = base_url
        self.endpoint = api_url.rstrip("/") + "/1/messages.json"

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(KIND, self.deliver)

    async def deliver(self, item: OutboxItem) -> Outcome:
        payload = item.payload
        async with self.db.read() as session:
            user_key = await user_key_of(session, payload["agent_id"])
        if user_key is None:
            return Outcome(True, detail="skipped: the agent removed their Pushover key", result={"skipped": True})
        form = {
            "token": self.token,
            "user": user_key,
            "title": payload["title"],
            "message": payload["message"],
            "url": absolute(self.base_url, payload["link_path"]),
            "url_title": "Open in deskbell",
        }
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
                async with http.post(self.endpoint, data=form) as resp:
                    status, raw = resp.status, await resp.content.read(2000)
        except asyncio.TimeoutError:
            return Outcome(False, detail=f"no answer within {TIMEOUT_S:.0f} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(False, detail=f"{type(exc).__name__}: {exc}")
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if status == 200 and body.get("status") == 1:
            return Outcome(True, status_code=status, detail=f"request {body.get('request', '?')}", result={"request": body.get("request")})
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = f"HTTP {status}: " + ("; ".join(map(str, errors)) if errors else raw.decode("utf-8", "replace")[:300])
        return Outcome(False, status_code=status, detail=detail, permanent=400 <= status < 500 and status != 429)
