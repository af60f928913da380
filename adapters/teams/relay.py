"""Outbox handlers that post into Teams: reply chains, replies, root card updates, offline messages.

Each handler reads what to post from the database (the truth), makes one or
two connector calls paced per channel, records where the post landed
(:class:`ThreadLink`, :class:`MessageLink`) and reports an :class:`Outcome`.
Delivery is at least once: a crash between Teams' answer and our commit
means a retry may post a line twice, never that a line is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from core.bindings import get_binding, link_thread, mark_broken, thread_for
from core.db import Database
from core.digests import digest_text
from core.errors import NotFound
from core.models import Agent, ChannelBinding, Conversation, Message, MessageLink, OfflineMessage, OutboxItem, Widget
from core.outbox import Outcome

from adapters.teams import cards
from adapters.teams.connector import Connector
from adapters.teams.errors import classify
from adapters.teams.pacing import Pacer
from adapters.teams.text import relay_line

log = logging.getLogger(__name__)


def chat_facts(conv: Conversation, widget: Widget, *, claimed_by: str | None, first_text: str | None) -> cards.ChatFacts:
    return cards.ChatFacts(
        conversation_id=conv.id,
        widget_name=widget.name,
        visitor_name=conv.visitor_name,
        visitor_email=conv.visitor_email,
        page_url=conv.page_url,
        page_title=conv.page_title,
        timezone=conv.timezone,
        started_at=conv.created_at,
        status=conv.status,
        claimed_by=claimed_by,
        first_text=first_text,
    )


def offline_facts(row: OfflineMessage, widget: Widget) -> cards.OfflineFacts:
    return cards.OfflineFacts(
        offline_message_id=row.id,
        widget_name=widget.name,
        name=row.name,
        email=row.email,
        message=row.message,
        page_url=row.page_url,
        status=row.status,
    )


def root_activity(facts: cards.ChatFacts) -> dict[str, Any]:
    return {"summary": cards.root_summary(facts), "attachments": [cards.attachment(cards.root_card(facts))]}


def line_activity(message: Message) -> dict[str, Any]:
    return {"text": relay_line(message.sender, message.author, message.text, internal=message.internal), "textFormat": "xml"}


class TeamsRelay:
    def __init__(self, db: Database, connector: Connector, pacer: Pacer, public_url: str = "") -> None:
        self.db = db
        self.connector = connector
        self.pacer = pacer
        self.public_url = public_url  # for links in digests

    def handlers(self) -> dict[str, Callable[[OutboxItem], Awaitable[Outcome]]]:
        return {
            "teams.relay": self.relay,
            "teams.root_update": self.root_update,
            "teams.offline_post": self.offline_post,
            "teams.digest": self.digest,
            "teams.agents_away": self.agents_away,
        }

    # -- the handlers -----------------------------------------------------
    async def relay(self, item: OutboxItem) -> Outcome:
        return await self._guarded(item, self._relay)

    async def root_update(self, item: OutboxItem) -> Outcome:
        return await self._guarded(item, self._root_update)

    async def offline_post(self, item: OutboxItem) -> Outcome:
        return await self._guarded(item, self._offline_post)

    async def digest(self, item: OutboxItem) -> Outcome:
        return await self._guarded(item, self._digest)

    async def agents_away(self, item: OutboxItem) -> Outcome:
        return await self._guarded(item, self._agents_away)

    async def _guarded(
        self, item: OutboxItem, work: Callable[[dict[str, Any], ChannelBinding], Awaitable[Outcome]]
    ) -> Outcome:
        """Run one delivery; turn the connector's refusals into outcomes and broken bindings."""
        async with self.db.read() as session:
            try:
                binding = await get_binding(session, int(item.payload["binding_id"]))
            except NotFound:
                return Outcome(False, detail="the channel binding was removed", permanent=True)
        if not binding.config.get("service_url"):
            return Outcome(False, detail="the binding has no Teams service URL: run @deskbell setup in the channel", permanent=True)
        try:
            outcome = await work(item.payload, binding)
        except NotFound as exc:
            return Outcome(False, detail=str(exc), permanent=True)
        except Exception as exc:
            failure = classify(exc, item.attempts)  # re-raises what is not a connector or network error
            if failure.broken:
                await self._set_broken(binding.id, failure.broken)
            return failure.outcome
        if binding.status != "ok":
            await self._set_ok(binding.id)
        return outcome

    async def _relay(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            conv = await _get(session, Conversation, payload["conversation_id"])
            message = await _get(session, Message, payload["message_id"])
            widget = await _get(session, Widget, conv.widget_id)
            thread = await thread_for(session, conv.id, binding.id)
            claimed_by = await _agent_name(session, conv.claimed_by)
        where = _where(binding)
        if thread is None:
            opens = message.sender == "visitor"
            facts = chat_facts(conv, widget, claimed_by=claimed_by, first_text=message.text if opens else None)
            await self.pacer.wait(binding.channel_id)
            chain, root = await self.connector.create_chain(
                channel_id=binding.channel_id, tenant_id=binding.config.get("tenant_id"), activity=root_activity(facts), **where
            )
            async with self.db.write() as session:
                await link_thread(session, conv.id, binding.id, thread_ref=chain, root_ref=root)
                if opens:
                    session.add(MessageLink(message_id=message.id, binding_id=binding.id, platform_ref=root))
            if opens:
                return Outcome(True, status_code=201, result={"conversation_id": chain, "activity_id": root})
            thread_ref = chain
        else:
            thread_ref = thread.thread_ref
        await self.pacer.wait(binding.channel_id)
        sent = await self.connector.send(conversation_id=thread_ref, activity=line_activity(message), **where)
        if sent:
            async with self.db.write() as session:
                session.add(MessageLink(message_id=message.id, binding_id=binding.id, platform_ref=sent))
        return Outcome(True, status_code=201, result={"conversation_id": thread_ref, "activity_id": sent})

    async def _root_update(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            conv = await _get(session, Conversation, payload["conversation_id"])
            thread = await thread_for(session, conv.id, binding.id)
            if thread is None or not thread.root_ref:
                return Outcome(True, detail="no reply chain yet: the root will show the current state when posted")
            widget = await _get(session, Widget, conv.widget_id)
            claimed_by = await _agent_name(session, conv.claimed_by)
            first = (
                await session.execute(
                    select(Message)
                    .join(MessageLink, MessageLink.message_id == Message.id)
                    .where(MessageLink.binding_id == binding.id, MessageLink.platform_ref == thread.root_ref)
                )
            ).scalar_one_or_none()
        facts = chat_facts(conv, widget, claimed_by=claimed_by, first_text=first.text if first else None)
        await self.pacer.wait(binding.channel_id)
        await self.connector.update(
            conversation_id=thread.thread_ref, activity_id=thread.root_ref, activity=root_activity(facts), **_where(binding)
        )
        return Outcome(True, status_code=200, result={"conversation_id": thread.thread_ref, "activity_id": thread.root_ref})

    async def _digest(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        """The manager digest as a new post in the channel (plain text, links included)."""
        text = digest_text(payload["digest"], self.public_url)
        activity = {"type": "message", "text": text, "textFormat": "plain"}
        return await self._new_post(binding, activity, channel_id=payload.get("channel_id"))

    async def _agents_away(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        return await self._new_post(binding, {"type": "message", "text": f"⚠ {payload['text']}", "textFormat": "plain"})

    async def _new_post(
        self, binding: ChannelBinding, activity: dict[str, Any], channel_id: str | None = None
    ) -> Outcome:
        """A new post in the bound channel, or in another channel of the same team (managers')."""
        channel = channel_id or binding.channel_id
        await self.pacer.wait(channel)
        chain, root = await self.connector.create_chain(
            channel_id=channel, tenant_id=binding.config.get("tenant_id"), activity=activity, **_where(binding)
        )
        return Outcome(True, status_code=201, result={"conversation_id": chain, "activity_id": root})

    async def _offline_post(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            row = await _get(session, OfflineMessage, payload["offline_message_id"])
            widget = await _get(session, Widget, row.widget_id)
        card = cards.offline_card(offline_facts(row, widget))
        await self.pacer.wait(binding.channel_id)
        chain, root = await self.connector.create_chain(
            channel_id=binding.channel_id,
            tenant_id=binding.config.get("tenant_id"),
            activity={"summary": f"Offline message on {widget.name}", "attachments": [cards.attachment(card)]},
            **_where(binding),
        )
        return Outcome(True, status_code=201, result={"conversation_id": chain, "activity_id": root})

    # -- helpers ----------------------------------------------------------
    async def _set_broken(self, binding_id: int, detail: str) -> None:
        async with self.db.write() as session:
            binding = await session.get(ChannelBinding, binding_id)
            if binding is not None:
                mark_broken(binding, detail)
                log.error(
                    "Teams channel %s (binding %s, widget %s) is broken: %s",
                    binding.channel_name or binding.channel_id, binding.id, binding.widget_id, detail,
                )

    async def _set_ok(self, binding_id: int) -> None:
        """Posting works again (the app is back): clear the broken mark."""
        async with self.db.write() as session:
            binding = await session.get(ChannelBinding, binding_id)
            if binding is not None and binding.status != "ok":
                binding.status, binding.status_detail = "ok", None
                log.info("Teams channel %s (binding %s) works again", binding.channel_id, binding.id)


def _where(binding: ChannelBinding) -> dict[str, Any]:
    return {"service_url": binding.config["service_url"], "bot_id": binding.config.get("bot_id")}


async def _get(session: Any, model: type, ident: Any) -> Any:
    row = await session.get(model, int(ident))
    if row is None:
        raise NotFound(f"{model.__tablename__} {ident} no longer exists")
    return row


async def _agent_name(session: Any, agent_id: int | None) -> str | None:
    if agent_id is None:
        return None
    agent = await session.get(Agent, agent_id)
    return agent.name if agent else None
