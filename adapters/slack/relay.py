"""Outbox handlers that post into Slack: thread roots, replies, root updates, offline messages.

Each handler reads what to post from the database (the truth), makes one or
two Web API calls paced per channel, records where the post landed
(:class:`ThreadLink`, :class:`MessageLink`) as the outcome's ``effects``, written in
the transaction that records the attempt, and reports an :class:`Outcome`.
Delivery is at least once: a crash between Slack's answer and our commit
means a retry may post a line twice, never that a line is lost.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from core.bindings import link_thread
from core.db import Database
from core.digests import digest_text
from core.models import ChannelBinding, Message, OfflineMessage, OutboxItem, Widget
from core.outbox import Outcome

from adapters.slack import blocks
from adapters.slack.clients import SlackClients
from adapters.channel_relay import (
    ChannelRelay, RootState, ThreadReply, get_row, link_message, link_root, root_state,
)
from adapters.slack.errors import Failure, classify
from adapters.slack.pacing import ChannelPacer


def root_message(root: RootState) -> tuple[str, list[dict[str, Any]]]:
    """A thread root's text and blocks as its state says now (claimed, closed, "Take over")."""
    return blocks.root_message(
        root.conv, root.widget.name, first_text=root.first_text, claimed_by=root.claimed_by, assistant=root.assistant
    )


class SlackRelay(ChannelRelay):
    platform, label = "slack", "Slack"

    def __init__(self, db: Database, clients: SlackClients, pacer: ChannelPacer, public_url: str = "") -> None:
        super().__init__(db, public_url)
        self.clients = clients
        self.pacer = pacer

    def classify(self, exc: BaseException, item: OutboxItem) -> Failure:
        return classify(exc)  # re-raises what is not a Slack or network error

    async def _relay(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        reply, ctx, assistant = await self.relay_line(payload, binding.id)
        client = await self.clients.for_team(binding.workspace_id, outbox=True)
        if reply is not None:
            return await self._reply(client, binding, reply, reply.thread_ref)
        assert ctx is not None  # no thread yet: the full context was read
        conv, message = ctx.conv, ctx.message
        if ctx.thread is None:
            opens = message.sender == "visitor"
            text, root_blocks = blocks.root_message(
                conv,
                ctx.widget.name,
                first_text=message.text if opens else None,
                claimed_by=ctx.claimed_by,
                assistant=assistant,
            )
            root_ts = await self._post(client, binding.channel_id, text=text, blocks=root_blocks)
            if opens:  # the root carries the line: one post, recorded with the attempt
                effects = link_root(conv.id, binding.id, thread_ref=root_ts, root_ref=root_ts, message_id=message.id)
                return Outcome(True, status_code=200, result={"ts": root_ts, "thread_ts": root_ts}, effects=effects)
            async with self.db.write() as session:  # kept even if the reply below fails: no second root
                await link_thread(session, conv.id, binding.id, thread_ref=root_ts, root_ref=root_ts)
            thread_ts = root_ts
        else:
            thread_ts = ctx.thread.thread_ref
        return await self._reply(client, binding, message, thread_ts)

    async def _reply(self, client: AsyncWebClient, binding: ChannelBinding, message: Message | ThreadReply, thread_ts: str) -> Outcome:
        """Post a line in its thread; where it landed is written with the attempt."""
        ts = await self._post(client, binding.channel_id, thread_ts=thread_ts, **blocks.relay_message(message))
        return Outcome(
            True, status_code=200, result={"ts": ts, "thread_ts": thread_ts}, effects=link_message(message.id, binding.id, ts)
        )

    async def _root_update(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            root = await root_state(session, payload["conversation_id"], binding.id)
        if root is None:
            return Outcome(True, detail="no thread yet: the root will show the current state when posted")
        client = await self.clients.for_team(binding.workspace_id, outbox=True)
        text, root_blocks = root_message(root)
        await client.chat_update(channel=binding.channel_id, ts=root.root_ref, text=text, blocks=root_blocks)
        return Outcome(True, status_code=200, result={"ts": root.root_ref})

    async def _offline_post(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        async with self.db.read() as session:
            row = await get_row(session, OfflineMessage, payload["offline_message_id"])
            widget = await get_row(session, Widget, row.widget_id)
        client = await self.clients.for_team(binding.workspace_id, outbox=True)
        text, post_blocks = blocks.offline_post(row, widget.name)
        ts = await self._post(client, binding.channel_id, text=text, blocks=post_blocks)
        return Outcome(True, status_code=200, result={"ts": ts, "channel": binding.channel_id})

    async def _digest(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        """The manager digest, as plain text: counts, unhandled first, links."""
        client = await self.clients.for_team(binding.workspace_id, outbox=True)
        channel = payload.get("channel_id") or binding.channel_id  # a managers' channel when one is set
        ts = await self._post(client, channel, text=digest_text(payload["digest"], self.public_url))
        return Outcome(True, status_code=200, result={"ts": ts})

    async def _agents_away(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        """"All agents went offline during business hours": the text is written by core."""
        client = await self.clients.for_team(binding.workspace_id, outbox=True)
        ts = await self._post(client, binding.channel_id, text=f":warning: {payload['text']}")
        return Outcome(True, status_code=200, result={"ts": ts})

    # -- helpers ----------------------------------------------------------
    async def _post(self, client: AsyncWebClient, channel: str, **kwargs: Any) -> str:
        await self.pacer.wait(channel)
        response = await client.chat_postMessage(channel=channel, unfurl_links=False, unfurl_media=False, **kwargs)
        return str(response["ts"])
