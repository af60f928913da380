"""Outbound calls to the Bot Connector, through the Agents SDK's proactive path.

Every call is a proactive turn (``continue_conversation``) on the channel or
reply chain, so the SDK builds the connector client for the stored
``serviceUrl`` with our token, and closes it when the turn ends, failed or
not. Two traps are handled here once:

* the continuation activity must carry no id: the SDK would turn every send
  into a reply to that (random) id, a message that does not exist;
* the SDK's default turn-error handler posts the exception text into the
  conversation; failures must reach the outbox instead, so it is removed.
"""

from __future__ import annotations

from typing import Any

from microsoft_agents.activity import Activity, ChannelAccount, ConversationAccount, ConversationParameters
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import TurnContext
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.teams.ids import created_chain_id

TEAMS_CHANNEL = "msteams"


def continuation(service_url: str, conversation_id: str, bot_id: str | None, tenant_id: str | None = None) -> Activity:
    """The activity a proactive turn starts from: deliberately without an id."""
    return Activity(
        type="event",
        name="ContinueConversation",
        channel_id=TEAMS_CHANNEL,
        service_url=service_url,
        conversation=ConversationAccount(id=conversation_id, tenant_id=tenant_id),
        recipient=ChannelAccount(id=bot_id) if bot_id else None,
    )


def outgoing(activity: dict[str, Any]) -> Activity:
    return Activity.model_validate({"type": "message", **activity})


class Connector:
    def __init__(self, adapter: CloudAdapter, app_id: str | None) -> None:
        self.adapter = adapter
        self.app_id = app_id or ""

    async def create_chain(
        self, *, service_url: str, tenant_id: str | None, channel_id: str, bot_id: str | None, activity: dict[str, Any]
    ) -> tuple[str, str]:
        """Post ``activity`` as a new reply chain in the channel; return (chain conversation id, root id)."""
        result: dict[str, str] = {}
        bot_id = bot_id or (f"28:{self.app_id}" if self.app_id else None)  # Teams' id of our bot
        fields: dict[str, Any] = {
            "is_group": True,
            "activity": outgoing(activity),
            "channel_data": {"channel": {"id": channel_id}, **({"tenant": {"id": tenant_id}} if tenant_id else {})},
        }
        if bot_id:
            fields["agent"] = ChannelAccount(id=bot_id)
        if tenant_id:
            fields["tenant_id"] = tenant_id
        params = ConversationParameters(**fields)

        async def create(context: TurnContext) -> None:
            client = context.services.get(ConnectorClientBase)
            response = await client.conversations.create_conversation(params)
            result["root"] = response.activity_id or ""
            result["chain"] = created_chain_id(response.id or channel_id, response.activity_id)

        await self.adapter.continue_conversation(self.app_id, continuation(service_url, channel_id, bot_id, tenant_id), create)
        return result["chain"], result["root"]

    async def send(self, *, service_url: str, conversation_id: str, bot_id: str | None, activity: dict[str, Any]) -> str:
        """Post into a conversation (a reply chain: the post lands in the thread); return its id."""
        sent: dict[str, str] = {}

        async def post(context: TurnContext) -> None:
            response = await context.send_activity(outgoing(activity))
            sent["id"] = (response.id if response else None) or ""

        await self.adapter.continue_conversation(self.app_id, continuation(service_url, conversation_id, bot_id), post)
        return sent["id"]

    async def update(
        self, *, service_url: str, conversation_id: str, bot_id: str | None, activity_id: str, activity: dict[str, Any]
    ) -> None:
        """Replace a post deskbell made (the root card after Claim or Close)."""

        async def put(context: TurnContext) -> None:
            await context.update_activity(outgoing({**activity, "id": activity_id}))

        await self.adapter.continue_conversation(self.app_id, continuation(service_url, conversation_id, bot_id), put)
