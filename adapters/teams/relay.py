"""Outbox handlers that post into Teams: reply chains, replies, root card updates, offline messages.

Each handler reads what to post from the database (the truth), makes one or
two connector calls paced per channel, records where the post landed
(:class:`ThreadLink`, :class:`MessageLink`) as the outcome's ``effects``, written in
the transaction that records the attempt, and reports an :class:`Outcome`.
Delivery is at least once: a crash between Teams' answer and our commit
means a retry may post a line twice, never that a line is lost.
"""

from __future__ import annotations

from typing import Any

from core.bindings import link_thread
from core.db import Database
from core.digests import digest_text
from core.models import ChannelBinding, Conversation, Message, OfflineMessage, OutboxItem, Widget
from core.outbox import Outcome

from adapters.teams import cards
from adapters.teams.connector import Connector
from adapters.channel_relay import (
    ChannelRelay, RootState, ThreadReply, get_row, link_message, link_root, root_state,
)
from adapters.teams.errors import Failure, classify
from adapters.teams.pacing import Pacer
from adapters.teams.text import relay_line



def chat_facts(
    conv: Conversation, widget: Widget, *, claimed_by: str | None, first_text: str | None, assistant: bool = False
) -> cards.ChatFacts:
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
        assistant=assistant,
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


def root_facts(root: RootState) -> cards.ChatFacts:
    """What a chat's root card shows as its state says now (claimed, closed, "Take over")."""
    return chat_facts(
        root.conv, root.widget, claimed_by=root.claimed_by, first_text=root.first_text, assistant=root.assistant
    )


def root_activity(facts: cards.ChatFacts) -> dict[str, Any]:
    return {"summary": cards.root_summary(facts), "attachments": [cards.attachment(cards.root_card(facts))]}


def line_activity(message: Message | ThreadReply) -> dict[str, Any]:
    return {"text": relay_line(message.sender, message.author, message.text, internal=message.internal), "textFormat": "xml"}


class TeamsRelay(ChannelRelay):
    platform, label = "teams", "Teams"

    def __init__(self, db: Database, connector: Connector, pacer: Pacer, public_url: str = "") -> None:
        super().__init__(db, public_url)
        self.connector = connector
        self.pacer = pacer

    def precheck(self, binding: ChannelBinding) -> Outcome | None:
        if not binding.config.get("service_url"):
            return Outcome(False, detail="the binding has no Teams service URL: run @deskbell setup in the channel", permanent=True)
        return None

    def classify(self, exc: BaseException, item: OutboxItem) -> Failure:
        return classify(exc, item.attempts)  # re-raises what is not a connector or network error

    async def _relay(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        reply, ctx, assistant = await self.relay_line(payload, binding.id)
        if reply is not None:
            return await self._reply(binding, reply, reply.thread_ref)
        assert ctx is not None  # no thread yet: the full context was read
        conv, message = ctx.conv, ctx.message
        where = _where(binding)
        if ctx.thread is None:
            opens = message.sender == "visitor"
            facts = chat_facts(
                conv,
                ctx.widget,
                claimed_by=ctx.claimed_by,
                first_text=message.text if opens else None,
                assistant=assistant,
            )
            await self.pacer.wait(binding.channel_id)
            chain, root = await self.connector.create_chain(
                channel_id=binding.channel_id, tenant_id=binding.config.get("tenant_id"), activity=root_activity(facts), **where
            )
            if opens:  # the root carries the line: one post, recorded with the attempt
                effects = link_root(conv.id, binding.id, thread_ref=chain, root_ref=root, message_id=message.id)
                return Outcome(True, status_code=201, result={"conversation_id": chain, "activity_id": root}, effects=effects)
            async with self.db.write() as session:  # kept even if the reply below fails: no second chain
                await link_thread(session, conv.id, binding.id, thread_ref=chain, root_ref=root)
            thread_ref = chain
        else:
            thread_ref = ctx.thread.thread_ref
        return await self._reply(binding, message, thread_ref)

    async def _reply(self, binding: ChannelBinding, message: Message | ThreadReply, thread_ref: str) -> Outcome:
        """Send a line into its chain; where it landed is written with the attempt."""
        await self.pacer.wait(binding.channel_id)
        sent = await self.connector.send(conversation_id=thread_ref, activity=line_activity(message), **_where(binding))
        return Outcome(
            True,
            status_code=201,
            result={"conversation_id": thread_ref, "activity_id": sent},
            effects=link_message(message.id, binding.id, sent) if sent else None,
        )

    async def _root_update(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            root = await root_state(session, payload["conversation_id"], binding.id)
        if root is None or root.thread_ref is None:
            return Outcome(True, detail="no reply chain yet: the root will show the current state when posted")
        await self.pacer.wait(binding.channel_id)
        chain, activity_id = root.thread_ref, root.root_ref
        await self.connector.update(
            conversation_id=chain, activity_id=activity_id, activity=root_activity(root_facts(root)), **_where(binding)
        )
        return Outcome(True, status_code=200, result={"conversation_id": chain, "activity_id": activity_id})

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
            row = await get_row(session, OfflineMessage, payload["offline_message_id"])
            widget = await get_row(session, Widget, row.widget_id)
        card = cards.offline_card(offline_facts(row, widget))
        await self.pacer.wait(binding.channel_id)
        chain, root = await self.connector.create_chain(
            channel_id=binding.channel_id,
            tenant_id=binding.config.get("tenant_id"),
            activity={"summary": f"Offline message on {widget.name}", "attachments": [cards.attachment(card)]},
            **_where(binding),
        )
        return Outcome(True, status_code=201, result={"conversation_id": chain, "activity_id": root})


def _where(binding: ChannelBinding) -> dict[str, Any]:
    return {"service_url": binding.config["service_url"], "bot_id": binding.config.get("bot_id")}
