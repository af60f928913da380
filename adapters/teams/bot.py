"""Inbound activities: agent replies in reply chains, commands, card buttons, install events.

The Agents SDK's :class:`ActivityHandler` dispatches by activity type; each
handler reads the activity once (:func:`read_inbound`) and calls core
services, the one path of DESIGN.md. Redeliveries are no-ops: agent
replies are deduplicated inside :meth:`ChatService.agent_message`, every
other action through :func:`core.dedupe.first_time`, keyed by activity id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from microsoft_agents.activity import Activity, InvokeResponse
from microsoft_agents.hosting.core import ActivityHandler, TurnContext
from microsoft_agents.hosting.core.connector import ConnectorClientBase
from sqlalchemy import select

from core.agents import agent_to_json, get_agent
from core.assistant_state import quiet_reason
from core.bindings import bind_channel, bindings_for_channel, conversation_for_thread, mark_broken
from core.conversations import get_conversation
from core.dedupe import first_time
from core.errors import Conflict, DomainError, NotFound
from core.models import ChannelBinding, MessageLink, Widget
from core.offline import get_offline_message, set_status
from core.services import Services
from core.widgets import find_widget

from adapters.channel_relay import root_state
from adapters.teams import cards
from adapters.teams.commands import Command, NotACommand, help_text, parse_command
from adapters.teams.directory import AgentRef, Directory
from adapters.teams.ids import channel_part, event_key
from adapters.teams.inbound import Inbound, read_inbound
from adapters.teams.relay import offline_facts, root_activity, root_facts
from adapters.teams.text import escape, to_plain

PLATFORM = "teams"
SOURCE = "teams"  # ProcessedEvent.source
log = logging.getLogger(__name__)

WELCOME = (
    "Thanks for adding deskbell. In the channel that should receive website chats, "
    "write <b>@deskbell setup</b> (or <b>setup KEY</b> when you have several widgets). "
    "Say <b>online</b> to me to go on duty."
)


def _message(text: str) -> Activity:
    return Activity(type="message", text=text, text_format="xml")


def _card_message(card: cards.Card, summary: str) -> Activity:
    return Activity.model_validate({"type": "message", "summary": summary, "attachments": [cards.attachment(card)]})


class TeamsBot(ActivityHandler):
    def __init__(self, svc: Services, directory: Directory) -> None:
        self.svc = svc
        self.directory = directory

    # -- dispatch by activity type ---------------------------------------
    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        inb = read_inbound(turn_context.activity)
        if inb.from_bot:
            return
        if inb.value is not None:
            action = cards.parse_card_action(inb.value)
            if action is not None:
                reply = await self._card_action(turn_context, inb, action)
                if reply:
                    await turn_context.send_activity(_message(escape(reply)))
                return
        parsed = parse_command(inb.text)
        if inb.personal:
            await self._command(turn_context, inb, parsed if parsed is not None else Command("help"))
            return
        if inb.mentions_bot and isinstance(parsed, Command):
            await self._command(turn_context, inb, parsed)
            return
        linked = await self._linked_chat(inb)
        if linked is not None:
            await self._agent_reply(turn_context, inb, *linked)
            return
        if inb.mentions_bot:
            await self._command(turn_context, inb, parsed if parsed is not None else Command("help"))

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse | None:  # type: ignore[override]
        activity = turn_context.activity
        if activity.name != "adaptiveCard/action":
            return await super().on_invoke_activity(turn_context)
        inb = read_inbound(activity)
        action = cards.parse_card_action(inb.value)
        if action is None:
            return InvokeResponse(status=int(HTTPStatus.BAD_REQUEST), body={"statusCode": 400, "type": "application/vnd.microsoft.error", "value": {"code": "BadRequest", "message": "not a deskbell action"}})
        reply = await self._card_action(turn_context, inb, action)
        return InvokeResponse(
            status=int(HTTPStatus.OK),
            body={"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": reply or "Done"},
        )

    async def on_message_update_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        """An agent edited a reply they wrote in a chat's chain: the visitor sees the new text."""
        inb = read_inbound(turn_context.activity)
        if inb.event_type not in (None, "editMessage") or inb.from_bot:
            return
        message_id = await self._linked_message(inb)
        text = to_plain(inb.text)
        if message_id is None or not text:
            return
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        try:
            await self.svc.chat.edit_message(message_id, text, event_id=(SOURCE, f"edit:{digest}:{event_key(inb.id, inb.conversation_id)}"))
        except DomainError as exc:
            log.info("Teams edit of %s not applied: %s", inb.id, exc.message)

    async def on_message_delete_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        """An agent deleted a reply: it disappears from the visitor's widget."""
        inb = read_inbound(turn_context.activity)
        if inb.event_type not in (None, "softDeleteMessage"):
            return
        message_id = await self._linked_message(inb)
        if message_id is None:
            return
        try:
            await self.svc.chat.delete_message(message_id, event_id=(SOURCE, f"delete:{event_key(inb.id, inb.conversation_id)}"))
        except DomainError as exc:
            log.info("Teams deletion of %s not applied: %s", inb.id, exc.message)

    async def on_installation_update_add(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        inb = read_inbound(turn_context.activity)
        if await self._first_time(inb, "install"):
            await turn_context.send_activity(_message(WELCOME))

    async def on_installation_update_remove(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        inb = read_inbound(turn_context.activity)
        await self._mark_team_broken(inb, "the app was removed from the team: reinstall it, then run @deskbell setup in the channel again")

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        """Channel and team life cycle: a deleted channel or team cannot receive chats any more."""
        inb = read_inbound(turn_context.activity)
        activity = turn_context.activity
        if inb.event_type == "channelDeleted" and inb.channel_id:
            await self._mark_channels_broken(inb, lambda b: b.channel_id == inb.channel_id, "the channel was deleted: bind another channel with @deskbell setup")
        elif inb.event_type == "teamDeleted":
            await self._mark_team_broken(inb, "the team was deleted: bind a channel of another team with @deskbell setup")
        elif inb.event_type == "channelRenamed" and inb.channel_id and inb.channel_name:
            async with self.svc.db.write() as session:
                for binding in await bindings_for_channel(session, PLATFORM, inb.tenant_id, inb.channel_id):
                    binding.channel_name = inb.channel_name
        elif any(m.id == inb.bot_id for m in activity.members_removed or []):
            await self._mark_team_broken(inb, "the app was removed from the team: reinstall it, then run @deskbell setup in the channel again")

    # -- agent replies ------------------------------------------------------
    async def _linked_chat(self, inb: Inbound) -> tuple[ChannelBinding, int] | None:
        """The binding and deskbell conversation of the reply chain the message was written in."""
        if inb.chain_id is None or inb.channel_id is None:
            return None
        async with self.svc.db.read() as session:
            for binding in await bindings_for_channel(session, PLATFORM, inb.tenant_id, inb.channel_id):
                conversation_id = await conversation_for_thread(session, binding.id, inb.chain_id)
                if conversation_id is not None:
                    return binding, conversation_id
        return None

    async def _linked_message(self, inb: Inbound) -> int | None:
        if inb.channel_id is None:
            return None
        async with self.svc.db.read() as session:
            bindings = await bindings_for_channel(session, PLATFORM, inb.tenant_id, inb.channel_id)
            if not bindings:
                return None
            query = select(MessageLink.message_id).where(
                MessageLink.binding_id.in_([b.id for b in bindings]), MessageLink.platform_ref == inb.id
            )
            return (await session.execute(query)).scalars().first()

    async def _agent_reply(self, ctx: TurnContext, inb: Inbound, binding: ChannelBinding, conversation_id: int) -> None:
        text = to_plain(inb.text)
        if not text:
            return  # an image or file alone: deskbell relays text
        agent = await self._agent(ctx, inb)
        try:
            await self.svc.chat.agent_message(
                conversation_id,
                text,
                agent_id=agent.id,
                source_binding_id=binding.id,
                event_id=(SOURCE, event_key(inb.id, inb.conversation_id)),
                source_ref=inb.id,
            )
        except Conflict:
            await ctx.send_activity(_message("This chat is closed: the visitor did not get that message."))
        except DomainError as exc:
            await ctx.send_activity(_message(escape(f"Not sent to the visitor: {exc.message}")))

    # -- commands -------------------------------------------------------------
    async def _command(self, ctx: TurnContext, inb: Inbound, parsed: Command | NotACommand) -> None:
        if not await self._first_time(inb, "command"):
            return
        agent = await self._agent(ctx, inb)
        if isinstance(parsed, NotACommand):
            await self.svc.chat.agent_seen(agent.id)
            await ctx.send_activity(_message(escape(parsed.reason)))
            return
        if parsed.verb == "setup":
            await self.svc.chat.agent_seen(agent.id)
            await ctx.send_activity(_message(await self._setup(inb, parsed.arg)))
            return
        if parsed.verb == "help":
            await self.svc.chat.agent_seen(agent.id)
            await ctx.send_activity(_message(escape(help_text())))
            return
        if parsed.verb in ("online", "offline"):
            await self.svc.chat.set_duty(agent.id, parsed.verb == "online")
        elif parsed.verb == "stay":
            await self.svc.chat.update_agent(agent.id, {"stay_available": parsed.arg == "on"})
        if parsed.verb != "offline":
            await self.svc.chat.agent_seen(agent.id)  # every command is the agent being here
        status = await self._status(agent.id)
        await ctx.send_activity(_card_message(cards.status_card(status), cards.status_summary(status)))

    async def _setup(self, inb: Inbound, key: str | None) -> str:
        """Bind the channel the command was written in to a widget; return the answer (xml text)."""
        if inb.personal or not inb.channel_id or not inb.team_id:
            return "Run <b>@deskbell setup</b> in the team channel that should receive website chats."
        if not inb.service_url:
            return "Teams sent no service URL with this message; try again."
        async with self.svc.db.write() as session:
            if key:
                try:
                    widget = await find_widget(session, key)
                except NotFound:
                    return escape(f"No widget has the key {key!r}. The key is in the embed snippet (data-widget).")
            else:
                widgets = list((await session.execute(select(Widget).order_by(Widget.id).limit(21))).scalars())
                if len(widgets) != 1:
                    if not widgets:
                        return "There is no widget yet: create one with <b>deskbell widget create NAME</b>."
                    keys = ", ".join(f"{w.key} ({w.name})" for w in widgets[:20])
                    return escape(f"There are several widgets; run setup KEY with one of: {keys}")
                widget = widgets[0]
            await bind_channel(
                session,
                widget.id,
                PLATFORM,
                workspace_id=inb.tenant_id,
                channel_id=inb.channel_id,
                channel_name=inb.channel_name,
                config={
                    "service_url": inb.service_url,
                    "tenant_id": None if inb.tenant_id == "-" else inb.tenant_id,
                    "team_id": inb.team_id,
                    "team_name": inb.team_name,
                    "bot_id": inb.bot_id,
                    "bot_name": inb.bot_name,
                },
            )
            name = widget.name
        log.info("Teams channel %s bound to widget %s", inb.channel_id, name)
        return (
            f"This channel now receives the chats of <b>{escape(name)}</b>: each chat opens a new post here; "
            "reply in its thread to answer the visitor."
        )

    async def _status(self, agent_id: int) -> cards.AgentStatus:
        async with self.svc.db.read() as session:
            agent = await get_agent(session, agent_id)
            data = agent_to_json(agent)
            query = select(Widget).order_by(Widget.id).limit(10)
            widgets = [w for w in (await session.execute(query)).scalars() if agent.widget_ids is None or w.id in agent.widget_ids]
        rows = []
        for widget in widgets:
            status = await self.svc.watcher.status_of(widget)
            rows.append((widget.name, status.online, status.reason))
        return cards.AgentStatus(
            name=data["name"], on_duty=data["on_duty"], stay_available=data["stay_available"],
            available=data["available"], widgets=tuple(rows),
        )

    # -- card buttons ---------------------------------------------------------
    async def _card_action(self, ctx: TurnContext, inb: Inbound, action: cards.CardAction) -> str | None:
        """Claim, Close, Take over or Mark handled; returns what to tell the person, None when the card says it."""
        if not await self._first_time(inb, f"action:{action.verb}:{action.target_id}"):
            return None
        agent = await self._agent(ctx, inb)
        widget_ids = await self._bound_widgets(inb)
        try:
            if action.verb == cards.HANDLED:
                return await self._mark_handled(ctx, inb, action.target_id, agent, widget_ids)
            async with self.svc.db.read() as session:
                conv = await get_conversation(session, action.target_id)
            if conv.widget_id not in widget_ids:
                return "This chat does not belong to a widget bound to this channel."
            if action.verb == cards.CLAIM:
                await self.svc.chat.claim(conv.id, agent.id)
            elif action.verb == cards.TAKE_OVER:
                return await self._take_over(ctx, inb, conv.id, conv.widget_id, agent)
            else:
                await self.svc.chat.close(conv.id, agent.id)
        except Conflict as exc:
            return exc.message[:1].upper() + exc.message[1:] + "."
        except NotFound:
            return "That chat no longer exists."
        return None  # the root card is updated through the outbox

    async def _take_over(self, ctx: TurnContext, inb: Inbound, conversation_id: int, widget_id: int, agent: AgentRef) -> str | None:
        """Silence the assistant in the chat, say who did in the chain, and drop the button from the card."""
        async with self.svc.db.read() as session:
            if (await get_conversation(session, conversation_id)).status != "open":
                return "This chat is closed."
        stopped = await self.svc.chat.take_over(conversation_id)
        await self.svc.chat.agent_seen(agent.id)
        await self._refresh_root(ctx, inb, conversation_id, widget_id)
        if stopped:
            await ctx.send_activity(_message(escape(cards.take_over_note(agent.name))))
            return None
        async with self.svc.db.read() as session:
            status, reason = await quiet_reason(session, conversation_id) or (None, None)
        return cards.assistant_quiet_text(status, reason)

    async def _refresh_root(self, ctx: TurnContext, inb: Inbound, conversation_id: int, widget_id: int) -> None:
        """Rebuild the chat's root card in this channel at once, as the relay does.

        Every bound channel's root is also updated through the outbox; this one
        is the person's own feedback, before the chain says who took over.
        """
        async with self.svc.db.read() as session:
            bindings = await bindings_for_channel(session, PLATFORM, inb.tenant_id, inb.channel_id or "")
            binding = next((b for b in bindings if b.widget_id == widget_id), None)
            if binding is None:
                return
            root = await root_state(session, conversation_id, binding.id, clicked_root=inb.reply_to_id)
        if root is None:
            return
        activity = {"type": "message", "id": root.root_ref, **root_activity(root_facts(root))}
        try:
            await ctx.update_activity(Activity.model_validate(activity))
        except Exception as exc:  # the root update through the outbox fixes the card
            log.warning("could not refresh the root card of chat %s: %s", conversation_id, exc)

    async def _mark_handled(self, ctx: TurnContext, inb: Inbound, offline_id: int, agent: AgentRef, widget_ids: set[int]) -> str | None:
        async with self.svc.db.write() as session:
            row = await get_offline_message(session, offline_id)
            if row.widget_id not in widget_ids:
                return "This message does not belong to a widget bound to this channel."
            set_status(row, "handled")
            facts = offline_facts(row, await session.get(Widget, row.widget_id))
        await self.svc.chat.agent_seen(agent.id)
        if inb.reply_to_id:  # the card the button is on: show it handled
            card = cards.offline_card(facts)
            await ctx.update_activity(Activity.model_validate({"type": "message", "id": inb.reply_to_id, "attachments": [cards.attachment(card)]}))
        return None

    async def _bound_widgets(self, inb: Inbound) -> set[int]:
        if inb.channel_id is None:
            return set()
        async with self.svc.db.read() as session:
            return {b.widget_id for b in await bindings_for_channel(session, PLATFORM, inb.tenant_id, inb.channel_id)}

    # -- helpers --------------------------------------------------------------
    async def _agent(self, ctx: TurnContext, inb: Inbound) -> AgentRef:
        return await self.directory.agent_for(inb.tenant_id, inb.sender, lookup=_member_lookup(ctx, inb))

    async def _first_time(self, inb: Inbound, what: str) -> bool:
        async with self.svc.db.write() as session:
            return await first_time(session, SOURCE, f"{what}:{event_key(inb.id, inb.conversation_id)}"[:200])

    async def _mark_channels_broken(self, inb: Inbound, which: Callable[[ChannelBinding], bool], detail: str) -> None:
        async with self.svc.db.write() as session:
            query = select(ChannelBinding).where(ChannelBinding.platform == PLATFORM, ChannelBinding.workspace_id == inb.tenant_id)
            for binding in (await session.execute(query)).scalars():
                if which(binding):
                    mark_broken(binding, detail)
                    log.error("Teams channel %s (binding %s) is broken: %s", binding.channel_name or binding.channel_id, binding.id, detail)

    async def _mark_team_broken(self, inb: Inbound, detail: str) -> None:
        if inb.team_id:
            await self._mark_channels_broken(inb, lambda b: (b.config or {}).get("team_id") == inb.team_id, detail)


def _member_lookup(ctx: TurnContext, inb: Inbound) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    """Fetch the sender's member record (name, email) with the turn's connector client."""

    async def fetch() -> dict[str, Any] | None:
        client = ctx.services.get(ConnectorClientBase)
        getter = getattr(client, "get_conversation_member", None)
        if getter is None or not inb.sender_channel_id:
            return None
        member = await getter(inb.team_id or channel_part(inb.conversation_id), inb.sender_channel_id)
        return member.model_dump(by_alias=True, exclude_none=True)

    return fetch
