"""Delivering one webhook: sign with a fresh timestamp, POST, judge the answer.

- 2xx: delivered. Redirects are not followed (they count as failures), as
  in Standard Webhooks senders: an endpoint that moved must be updated.
- 410 Gone: the receiver asks us to stop; the endpoint is disabled and the
  delivery is dead at once (re-enable the endpoint, then retry it).
- 429 with ``Retry-After``: waited as told. Anything else, a timeout
  (15 s) or a connection error: retried on the outbox schedule.

The ``webhook-id`` and body come from the outbox row, so every retry is the
same message; only the timestamp and therefore the signature are new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import aiohttp

from adapters.webhooks.signing import headers
from core import webhooks as wh
from core.clock import utcnow
from core.db import Database
from core.dispatch import Dispatcher
from core.models import OutboxItem, WebhookEndpoint
from core.outbox import Outcome

TIMEOUT_S = 15.0
USER_AGENT = "deskbell-webhooks/1"
MAX_RETRY_AFTER_S = 3600.0


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER_S)


class WebhookDeliveries:
    def __init__(
        self, db: Database, *, timeout_s: float = TIMEOUT_S, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self.clock = clock  # the real time: receivers reject stale timestamps

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(wh.KIND, self.deliver)

    async def deliver(self, item: OutboxItem) -> Outcome:
        payload = item.payload
        test = payload.get("event_type") == wh.TEST_EVENT
        async with self.db.read() as session:
            endpoint = await session.get(WebhookEndpoint, payload["endpoint_id"])
        if endpoint is None:
            return Outcome(False, detail="the webhook endpoint was deleted", permanent=True)
        if not endpoint.enabled and not test:
            return Outcome(False, detail=f"the webhook endpoint is disabled ({endpoint.disabled_reason or 'by a person'})", permanent=True)
        timestamp = int(self.clock().timestamp())
        body = payload["body"]
        sent = {**headers(endpoint.secret, payload["msg_id"], timestamp, body), "user-agent": USER_AGENT}
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(endpoint.url, data=body.encode(), headers=sent, allow_redirects=False) as resp:
                    status = resp.status
                    text = (await resp.content.read(500)).decode("utf-8", "replace")
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            return Outcome(False, detail=f"no answer within {self.timeout_s:.0f} s", permanent=test)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(False, detail=f"{type(exc).__name__}: {exc}", permanent=test)
        detail = f"HTTP {status}" + (f": {text.strip()[:300]}" if text.strip() else "")
        if 200 <= status < 300:
            return Outcome(True, status_code=status, detail=detail)
        if status == 410:
            await self._disable(endpoint.id, f"the receiver answered 410 Gone to delivery {item.id}")
            return Outcome(False, status_code=status, detail=detail + " (endpoint disabled)", permanent=True)
        if status == 429 and retry_after is not None and not test:
            return Outcome(False, status_code=status, detail=detail, retry_after=retry_after)
        return Outcome(False, status_code=status, detail=detail, permanent=test)

    async def _disable(self, endpoint_id: int, reason: str) -> None:
        async with self.db.write() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is not None:
                wh.disable(endpoint, reason)
