"""Message events from bound channels: agents' replies, edits and deletions.

Only human lines inside a deskbell thread count. Bot messages (ours
included), other subtypes and the rest of the channel are ignored. Slack
retries an event it thinks we missed; the event id is recorded in the same
transaction as the reply, so a retry never reaches the visitor twice.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from core.bindings import bindings_for_channel, conversation_for_thread
from core.db import Database
from core.errors import Conflict, ValidationFailed
from core.models import MessageLink
from core.services import Services

from adapters.slack.directory import Directory
from adapters.slack.text import file_links, mentioned_users, to_plain

log = logging.getLogger(__name__)
PLATFORM = "slack"
REPLY_SUBTYPES = {None, "file_share", "thread_broadcast"}


def is_human_thread_reply(event: dict[str, Any]) -> bool:
    """A person's line inside a thread (not the thread's root, not a bot)."""
    if event.get("subtype") not in REPLY_SUBTYPES or event.get("bot_id") or not event.get("user"):
        return False
    thread_ts = event.get("thread_ts")
    return bool(thread_ts) and thread_ts != event.get("ts")


def event_key(body: dict[str, Any], event: dict[str, Any]) -> tuple[str, str]:
    """What makes a delivery unique: Slack's event id (the same on every retry)."""
    return ("slack", str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}:{event.get('subtype')}"))


async def find_thread(db: Database, team_id: str, channel_id: str, thread_ts: str) -> tuple[int, int] | None:
    """(binding id, conversation id) of a deskbell thread, or None for any other thread."""
    async with db.read() as session:
        for binding in await bindings_for_channel(session, PLATFORM, team_id, channel_id):
            conversation_id = await conversation_for_thread(session, binding.id, thread_ts)
            if conversation_id is not None:
                return binding.id, conversation_id
    return None


async def find_linked_message(db: Database, team_id: str, channel_id: str, ts: str) -> int | None:
    """The deskbell message a Slack line (by ts) was stored as, if it was."""
    async with db.read() as session:
        for binding in await bindings_for_channel(session, PLATFORM, team_id, channel_id):
            query = select(MessageLink.message_id).where(MessageLink.binding_id == binding.id, MessageLink.platform_ref == ts)
            found = (await session.execute(query)).scalar_one_or_none()
            if found is not None:
                return int(found)
    return None


class Inbound:
    def __init__(self, svc: Services, directory: Directory) -> None:
        self.svc = svc
        self.directory = directory

    async def on_message(self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        team_id = str(body.get("team_id") or event.get("team") or "")
        subtype = event.get("subtype")
        if subtype == "message_changed":
            await self._edited(team_id, body, event, client)
        elif subtype == "message_deleted":
            await self._deleted(team_id, body, event)
        elif is_human_thread_reply(event):
            await self._reply(team_id, body, event, client)

    async def _text(self, team_id: str, message: dict[str, Any], client: AsyncWebClient) -> str:
        raw = message.get("text") or ""
        names = await self.directory.names(team_id, mentioned_users(raw), client) if "<@" in raw else {}
        lines = [to_plain(raw, names)] if raw else []
        lines += file_links(message.get("files"))
        return "\n".join(lines).strip()

    async def _reply(self, team_id: str, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        channel, thread_ts = event["channel"], event["thread_ts"]
        target = await find_thread(self.svc.db, team_id, channel, thread_ts)
        if target is None:
            return  # a thread that is not a chat: none of our business
        binding_id, conversation_id = target
        text = await self._text(team_id, event, client)
        if not text:
            return
        agent = await self.directory.agent_for(team_id, event["user"], client)
        try:
            await self.svc.chat.agent_message(
                conversation_id,
                text,
                agent_id=agent.id,
                author=agent.name,
                avatar_url=agent.avatar_url,
                source_binding_id=binding_id,
                event_id=event_key(body, event),
                source_ref=event["ts"],
            )
        except (Conflict, ValidationFailed) as exc:
            await self._tell(client, channel, event["user"], thread_ts, f"Not sent to the visitor: {exc.message}")

    async def _edited(self, team_id: str, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        message = event.get("message") or {}
        previous = event.get("previous_message") or {}
        if message.get("bot_id") or not message.get("user") or message.get("text") == previous.get("text"):
            return  # a bot's edit, or an unfurl that changed nothing people wrote
        message_id = await find_linked_message(self.svc.db, team_id, event["channel"], str(message.get("ts")))
        if message_id is None:
            return
        text = await self._text(team_id, message, client)
        if text:
            try:
                await self.svc.chat.edit_message(message_id, text, event_id=event_key(body, event))
            except (Conflict, ValidationFailed) as exc:
                log.info("edit of message %s not relayed: %s", message_id, exc)

    async def _deleted(self, team_id: str, body: dict[str, Any], event: dict[str, Any]) -> None:
        ts = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
        if not ts or (event.get("previous_message") or {}).get("bot_id"):
            return
        message_id = await find_linked_message(self.svc.db, team_id, event["channel"], str(ts))
        if message_id is None:
            return
        try:
            await self.svc.chat.delete_message(message_id, event_id=event_key(body, event))
        except Conflict as exc:
            log.info("deletion of message %s not relayed: %s", message_id, exc)

    @staticmethod
    async def _tell(client: AsyncWebClient, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)
        except Exception:
            log.warning("could not tell Slack user %s: %s", user, text)
