"""Outbox handlers for email: load what the row points at, render, send.

A row whose subject is gone (deleted conversation) or no longer needed (the
visitor answered in the chat) ends as delivered with the reason in the
attempt log, so the deliveries list explains why no email went out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from adapters.email import render
from core.clock import utcnow
from core.db import Database
from core.dispatch import Dispatcher
from core.mail import KIND_DIGEST, KIND_OFFLINE, KIND_TRANSCRIPT, KIND_VISITOR_REPLY, transcript_to_send, visitor_reply_to_send
from core.models import Digest, OutboxItem
from core.outbox import Outcome


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> Outcome: ...


class EmailDeliveries:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        mail_from: str,
        base_url: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.transport = transport
        self.mail_from = mail_from
        self.base_url = base_url
        self.clock = clock

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(KIND_OFFLINE, self.offline_message)
        dispatcher.register(KIND_VISITOR_REPLY, self.visitor_reply)
        dispatcher.register(KIND_TRANSCRIPT, self.transcript)
        dispatcher.register(KIND_DIGEST, self.digest)

    def _envelope(self, item: OutboxItem) -> render.Envelope:
        return render.Envelope(
            sender=self.mail_from,
            message_id=render.message_id_for(item.id, self.mail_from),
            base_url=self.base_url,
            date=self.clock(),
        )

    async def offline_message(self, item: OutboxItem) -> Outcome:
        return await self.transport.send(render.offline_notification(item.payload, self._envelope(item)))

    async def visitor_reply(self, item: OutboxItem) -> Outcome:
        async with self.db.read() as session:
            chat = await visitor_reply_to_send(session, item.payload)
        if isinstance(chat, str):
            return Outcome(True, detail=chat, result={"skipped": True})
        return await self.transport.send(render.visitor_reply(chat, self._envelope(item)))

    async def transcript(self, item: OutboxItem) -> Outcome:
        async with self.db.read() as session:
            chat = await transcript_to_send(session, item.payload)
        if isinstance(chat, str):
            return Outcome(True, detail=chat, result={"skipped": True})
        return await self.transport.send(render.transcript(chat, self._envelope(item)))

    async def digest(self, item: OutboxItem) -> Outcome:
        async with self.db.read() as session:
            row = await session.get(Digest, item.payload["digest_id"])
        if row is None:
            return Outcome(True, detail="skipped: the digest was deleted with its widget", result={"skipped": True})
        return await self.transport.send(render.digest(row.content, item.payload["to"], self._envelope(item)))
