"""Buttons and the App Home: Claim/Close/Take over on a chat's root, "Mark
handled" on an offline message, duty and stay-available toggles at home.

Clicks are acknowledged first. Core makes double clicks harmless (a second
claim is refused with Conflict, a second close or take-over does nothing);
the person who lost the race is told ephemerally. After Claim, Close and
Take over the root is updated in every bound channel through the outbox,
like every post; "Take over" also refreshes the root it was pressed on at
once and says who took over in the thread.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from core.agents import agent_state
from core.assistant_state import quiet_reason
from core.availability import agent_available
from core.bindings import bindings_for_channel, mark_broken
from core.clock import utcnow
from core.conversations import get_conversation
from core.errors import DomainError
from core.models import Agent, ChannelBinding, Conversation, OfflineMessage, ThreadLink, Widget
from core.offline import set_status
from core.services import Services

from adapters.channel_relay import root_state
from adapters.slack import blocks
from adapters.slack.directory import Directory
from adapters.slack.errors import BROKEN_HINTS
from adapters.slack.relay import root_message
from adapters.slack.store import SqlInstallationStore

log = logging.getLogger(__name__)


def _ids(body: dict[str, Any]) -> tuple[str, str, str | None]:
    team = (body.get("team") or {}).get("id") or body.get("team_id") or ""
    user = (body.get("user") or {}).get("id") or ""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return team, user, channel


class Actions:
    def __init__(self, svc: Services, directory: Directory, installations: SqlInstallationStore | None) -> None:
        self.svc = svc
        self.directory = directory
        self.installations = installations

    async def _tell(self, client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
        _team, user, channel = _ids(body)
        message = body.get("message") or {}
        if not channel:
            return
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=message.get("thread_ts"))
        except Exception:
            log.warning("could not tell Slack user %s: %s", user, text)

    # -- chat root buttons --------------------------------------------------
    async def claim(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        team, user, _channel = _ids(body)
        try:
            agent = await self.directory.agent_for(team, user, client)
            await self.svc.chat.claim(int(action["value"]), agent.id)
        except DomainError as exc:
            await self._tell(client, body, f"Not claimed: {exc.message}")

    async def close(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        team, user, _channel = _ids(body)
        try:
            agent = await self.directory.agent_for(team, user, client)
            await self.svc.chat.close(int(action["value"]), agent.id)
        except DomainError as exc:
            await self._tell(client, body, f"Not closed: {exc.message}")

    async def take_over(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        """Silence the assistant in this chat: no more AI replies; a person answers from here on."""
        await ack()
        team, user, channel = _ids(body)
        try:
            agent = await self.directory.agent_for(team, user, client)
            conversation_id = int(action["value"])
            async with self.svc.db.read() as session:
                conv = await get_conversation(session, conversation_id)
                bindings = await bindings_for_channel(session, "slack", team, channel or "")
            binding = next((b for b in bindings if b.widget_id == conv.widget_id), None)
            if binding is None or not channel:
                await self._tell(client, body, "This chat does not belong to a widget bound to this channel.")
                return
            if conv.status != "open":
                await self._tell(client, body, "This chat is closed.")
                return
            stopped = await self.svc.chat.take_over(conversation_id)
            await self.svc.chat.agent_seen(agent.id)
            root_ts = await self._refresh_root(client, conversation_id, binding, body)
            if stopped and root_ts:
                try:
                    await client.chat_postMessage(channel=channel, thread_ts=root_ts, text=blocks.take_over_note(agent.name))
                except Exception as exc:
                    log.warning("could not say in chat %s's thread who took over: %s", conversation_id, exc)
            elif not stopped:
                async with self.svc.db.read() as session:
                    status, reason = await quiet_reason(session, conversation_id) or (None, None)
                await self._tell(client, body, blocks.assistant_quiet_text(status, reason))
        except DomainError as exc:
            await self._tell(client, body, f"Not taken over: {exc.message}")

    async def _refresh_root(
        self, client: AsyncWebClient, conversation_id: int, binding: ChannelBinding, body: dict[str, Any]
    ) -> str | None:
        """Rebuild the chat's root in this channel at once, as the relay does; its ts.

        Every bound channel's root is also updated through the outbox; this one
        is the person's own feedback, before the thread says who took over.
        """
        pressed_on = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
        async with self.svc.db.read() as session:
            root = await root_state(session, conversation_id, binding.id, clicked_root=pressed_on)
        if root is None:
            return None
        text, root_blocks = root_message(root)
        try:
            await client.chat_update(channel=binding.channel_id, ts=root.root_ref, text=text, blocks=root_blocks)
        except Exception as exc:  # the note still goes out; the root update through the outbox fixes the root
            log.warning("could not refresh the root of chat %s in %s: %s", conversation_id, binding.channel_id, exc)
        return root.root_ref

    async def offline_handled(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        """Marks the stored offline message handled, then shows it on the post."""
        await ack()
        team, user, channel = _ids(body)
        try:
            agent = await self.directory.agent_for(team, user, client)
            await self.svc.chat.agent_seen(agent.id)
            async with self.svc.db.write() as session:
                row = await session.get(OfflineMessage, int(action["value"]))
                if row is None:
                    raise DomainError("this offline message was deleted")
                if row.status != "handled":
                    set_status(row, "handled")
                widget = await session.get(Widget, row.widget_id)
            text, post_blocks = blocks.offline_post(row, widget.name if widget else "", handled_by=agent.name)
            ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
            if channel and ts:
                await client.chat_update(channel=channel, ts=ts, text=text, blocks=post_blocks)
        except DomainError as exc:
            await self._tell(client, body, f"Not changed: {exc.message}")

    # -- App Home -------------------------------------------------------------
    async def home_opened(self, event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        team = body.get("team_id") or event.get("view", {}).get("team_id") or ""
        await self.publish_home(team, event["user"], client)

    async def home_duty(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        team, user, _channel = _ids(body)
        agent = await self.directory.agent_for(team, user, client)
        await self.svc.chat.set_duty(agent.id, action.get("value") == "on")
        await self.publish_home(team, user, client)

    async def home_stay(self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        team, user, _channel = _ids(body)
        agent = await self.directory.agent_for(team, user, client)
        await self.svc.chat.agent_seen(agent.id)
        await self.svc.chat.update_agent(agent.id, {"stay_available": action.get("value") == "on"})
        await self.publish_home(team, user, client)

    async def publish_home(self, team: str, user: str, client: AsyncWebClient) -> None:
        ref = await self.directory.agent_for(team, user, client)
        now = utcnow()
        async with self.svc.db.read() as session:
            agent = await session.get(Agent, ref.id)
            assert agent is not None
            query = (
                select(Conversation, ChannelBinding.channel_id, ThreadLink.thread_ref)
                .outerjoin(
                    ChannelBinding,
                    (ChannelBinding.widget_id == Conversation.widget_id)
                    & (ChannelBinding.platform == "slack")
                    & (ChannelBinding.workspace_id == team),
                )
                .outerjoin(
                    ThreadLink,
                    (ThreadLink.conversation_id == Conversation.id) & (ThreadLink.binding_id == ChannelBinding.id),
                )
                .where(Conversation.status == "open")
                .order_by(Conversation.id.desc())
                .limit(40)
            )
            rows = (await session.execute(query)).all()
            timeouts = dict((await session.execute(select(Widget.id, Widget.session_timeout_s))).all())
        chats = [
            blocks.OpenChat(
                f"{blocks.visitor_label(conv)}" + (f" · claimed by {'you' if conv.claimed_by == agent.id else 'someone'}" if conv.claimed_by else " · unclaimed"),
                blocks.thread_url(channel_id, thread_ts) if channel_id and thread_ts else None,
            )
            for conv, channel_id, thread_ts in rows
            if agent.widget_ids is None or conv.widget_id in agent.widget_ids
        ]
        timeout = min(timeouts.values(), default=900)
        view = blocks.home_view(
            name=agent.name,
            on_duty=agent.on_duty,
            stay_available=agent.stay_available,
            available=agent_available(agent_state(agent), now, timeout),
            chats=chats,
        )
        await client.views_publish(user_id=user, view=view)

    # -- workspace lifecycle --------------------------------------------------
    async def uninstalled(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """app_uninstalled / tokens_revoked: the workspace's channels stop working until reinstalled."""
        team = str(body.get("team_id") or "")
        error = "app_uninstalled" if event.get("type") == "app_uninstalled" else "token_revoked"
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only user tokens were revoked; the bot still works
        detail = f"{error}: {BROKEN_HINTS[error]}"
        async with self.svc.db.write() as session:
            bindings = list(
                (
                    await session.execute(
                        select(ChannelBinding).where(ChannelBinding.platform == "slack", ChannelBinding.workspace_id == team)
                    )
                ).scalars()
            )
            for binding in bindings:
                mark_broken(binding, detail)
        log.error("Slack workspace %s: %s (%d channel bindings marked broken)", team, detail, len(bindings))
        if self.installations is not None:
            await self.installations.async_delete_all(enterprise_id=body.get("enterprise_id"), team_id=team)

