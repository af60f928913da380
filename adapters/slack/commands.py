"""Slash commands: ``/chat-setup``, ``/chat-online``, ``/chat-offline``, ``/chat-status``, ``/chat-stay``.

Every command is acknowledged at once (Slack gives 3 s) and answered
ephemerally through its ``response_url`` when the work is done; running
one counts as the agent being seen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select

from core.agents import agent_state
from core.availability import agent_available
from core.clock import utcnow
from core.errors import DomainError
from core.models import Agent, ChannelBinding, Conversation, Widget
from core.services import Services

from adapters.slack import blocks
from adapters.slack.channels import bind, pick_widget, prepare_channel
from adapters.slack.directory import Directory
from adapters.slack.errors import api_error

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]


def _serves(agent: Agent, widget_id: int) -> bool:
    return agent.widget_ids is None or widget_id in agent.widget_ids


class Commands:
    def __init__(self, svc: Services, directory: Directory) -> None:
        self.svc = svc
        self.directory = directory

    def table(self) -> dict[str, Callable[..., Awaitable[None]]]:
        return {
            "/chat-setup": self.setup,
            "/chat-online": self.online,
            "/chat-offline": self.offline,
            "/chat-status": self.status,
            "/chat-stay": self.stay,
        }

    async def _run(self, ack: Any, respond: Respond, work: Callable[[], Awaitable[str]]) -> None:
        await ack()
        try:
            text = await work()
        except DomainError as exc:
            text = exc.message
        except Exception as exc:  # the person gets a line, the log gets the details
            log.exception("Slack command failed")
            text = f"Something went wrong ({type(exc).__name__}); it has been logged."
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def _agent_id(self, command: dict[str, Any], client: AsyncWebClient) -> int:
        return (await self.directory.agent_for(command["team_id"], command["user_id"], client)).id

    async def setup(self, ack: Any, respond: Respond, command: dict[str, Any], client: AsyncWebClient) -> None:
        async def work() -> str:
            agent_id = await self._agent_id(command, client)
            await self.svc.chat.agent_seen(agent_id)
            async with self.svc.db.read() as session:
                widget = await pick_widget(session, (command.get("text") or "").strip())
            try:
                check = await prepare_channel(client, command["channel_id"])
            except SlackApiError as exc:
                return f"I could not check this channel: Slack said `{api_error(exc)}`."
            if not check.ok:
                return check.problem or "This channel can't be used."
            async with self.svc.db.write() as session:
                await bind(
                    session, widget, team_id=command["team_id"], channel_id=command["channel_id"],
                    channel_name=check.name or command.get("channel_name"),
                )
            return (
                f"Done: chats from *{widget.name}* (`{widget.key}`) now open a thread in this channel."
                " Reply in a thread to answer; `/chat-online` puts you on duty."
            )

        await self._run(ack, respond, work)

    async def online(self, ack: Any, respond: Respond, command: dict[str, Any], client: AsyncWebClient) -> None:
        async def work() -> str:
            await self.svc.chat.set_duty(await self._agent_id(command, client), True)
            return ":large_green_circle: You're on duty: chats can reach you while you're active in Slack. `/chat-offline` to stop."

        await self._run(ack, respond, work)

    async def offline(self, ack: Any, respond: Respond, command: dict[str, Any], client: AsyncWebClient) -> None:
        async def work() -> str:
            await self.svc.chat.set_duty(await self._agent_id(command, client), False)
            return ":white_circle: You're off duty. `/chat-online` when you're back."

        await self._run(ack, respond, work)

    async def stay(self, ack: Any, respond: Respond, command: dict[str, Any], client: AsyncWebClient) -> None:
        async def work() -> str:
            arg = (command.get("text") or "").strip().lower()
            if arg not in {"on", "off"}:
                return "Usage: `/chat-stay on` (count as available even when away from Slack) or `/chat-stay off`."
            agent_id = await self._agent_id(command, client)
            await self.svc.chat.agent_seen(agent_id)
            await self.svc.chat.update_agent(agent_id, {"stay_available": arg == "on"})
            if arg == "on":
                return ":pushpin: Stay available is on: while on duty you count as available even when away from Slack."
            return ":zzz: Stay available is off: you count as available while you're active in Slack."

        await self._run(ack, respond, work)

    async def status(self, ack: Any, respond: Respond, command: dict[str, Any], client: AsyncWebClient) -> None:
        async def work() -> str:
            await self.svc.chat.agent_seen(await self._agent_id(command, client))
            return blocks.status_report(await self.report(command["team_id"]))

        await self._run(ack, respond, work)

    async def report(self, team_id: str) -> list[blocks.WidgetReport]:
        """Each widget bound in this workspace: status and why, who is on duty, open chats."""
        now = utcnow()
        async with self.svc.db.read() as session:
            widgets = list(
                (
                    await session.execute(
                        select(Widget)
                        .join(ChannelBinding, ChannelBinding.widget_id == Widget.id)
                        .where(ChannelBinding.platform == "slack", ChannelBinding.workspace_id == team_id)
                        .order_by(Widget.id)
                    )
                ).scalars()
            )
            on_duty = list((await session.execute(select(Agent).where(Agent.on_duty.is_(True)).order_by(Agent.name))).scalars())
            open_counts = dict(
                (
                    await session.execute(
                        select(Conversation.widget_id, func.count())
                        .where(Conversation.status == "open")
                        .group_by(Conversation.widget_id)
                    )
                ).all()
            )
        rows = []
        for widget in widgets:
            status = await self.svc.watcher.status_of(widget)
            names = tuple(
                a.name + ("" if agent_available(agent_state(a), now, widget.session_timeout_s) else " (away)")
                for a in on_duty
                if _serves(a, widget.id)
            )
            rows.append(
                blocks.WidgetReport(
                    widget.name, widget.key, status.online, status.reason, status.mode, names, int(open_counts.get(widget.id, 0))
                )
            )
        return rows
