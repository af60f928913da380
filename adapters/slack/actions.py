"""Buttons and the App Home: Claim/Close on a chat's root, "Mark handled" on an
offline message, duty and stay-available toggles at home.

Clicks are acknowledged first. Core makes double clicks harmless (a second
claim is refused with Conflict, a second close does nothing); the person who
lost the race is told ephemerally. The root message itself is updated
through the outbox, like every post.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from core.agents import agent_state
from core.availability import agent_available
from core.bindings import mark_broken
from core.clock import utcnow
from core.errors import DomainError
from core.models import Agent, ChannelBinding, Conversation, OfflineMessage, ThreadLink, Widget
from core.offline import set_status
from core.services import Services

from adapters.slack import blocks
from adapters.slack.directory import Directory
from adapters.slack.errors import BROKEN_HINTS
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

