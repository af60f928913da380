"""A stand-in for the Pushover messages API (``POST /1/messages.json``).

Answers like Pushover does: 200 ``{"status": 1, "request": ...}`` for a
known app token and user key, 400 ``{"status": 0, "errors": [...]}``
otherwise; keeps every accepted push.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"  # 30 characters, like a real app token


@dataclass
class FakePushover:
    token: str = TOKEN
    users: set[str] = field(default_factory=set)
    pushes: list[dict[str, str]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)  # statuses to answer first (e.g. 500)
    server: TestServer | None = None

    async def _messages(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        request_id = str(uuid.uuid4())
        if self.fail_with:
            return web.json_response({"status": 0, "request": request_id, "errors": ["try later"]}, status=self.fail_with.pop(0))
        errors: dict[str, Any] = {}
        if form.get("token") != self.token:
            errors["token"] = "invalid"
        if form.get("user") not in self.users:
            errors["user"] = "invalid"
        if not form.get("message"):
            errors["message"] = "cannot be blank"
        if errors:
            messages = [f"{k} is invalid" for k in errors]
            return web.json_response({**errors, "errors": messages, "status": 0, "request": request_id}, status=400)
        self.pushes.append({k: str(v) for k, v in form.items()})
        return web.json_response({"status": 1, "request": request_id})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/1/messages.json", self._messages)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
