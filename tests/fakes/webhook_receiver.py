"""A webhook receiver that trusts nothing it cannot verify.

Every request is checked with ``standardwebhooks`` (the reference library
from PyPI), not with deskbell's signing code: an accepted request proves
our signatures are what any receiver expects. It can fail the first
attempts, answer chosen statuses, or hold requests, to prove retries, stable
ids and crash recovery. Receivers are at-least-once by design, so it keeps
every request and also the set of distinct ``webhook-id`` values.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Hit:
    msg_id: str
    timestamp: str
    payload: Any
    status: int


@dataclass
class WebhookReceiver:
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)  # answered in turn before 200s
    hold_s: float = 0.0  # wait this long before answering
    headers_out: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    started: int = 0  # verified requests that began being handled (some may still be held)
    server: TestServer | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            assert self.secret is not None, "set receiver.secret to the endpoint's secret"
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, AssertionError, ValueError) as exc:
            self.rejected.append(str(exc))
            return web.Response(status=401, text=f"bad signature: {exc}")
        self.started += 1
        status = self.statuses.pop(0) if self.statuses else 200
        # Recorded on arrival, as a receiver commits before answering: a sender that
        # dies before reading the answer has still delivered.
        self.hits.append(Hit(request.headers["webhook-id"], request.headers["webhook-timestamp"], payload, status))
        if self.hold_s:
            await asyncio.sleep(self.hold_s)
        return web.Response(status=status, text=json.dumps({"status": status}), headers=self.headers_out if status != 200 else None)

    async def start(self, port: int | None = None) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def distinct_accepted(self) -> dict[str, Hit]:
        """What a receiver that deduplicates on ``webhook-id`` keeps."""
        return {h.msg_id: h for h in self.accepted}
