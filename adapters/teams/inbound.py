"""What an inbound Teams activity says, read once into plain data. Pure.

Teams puts the facts deskbell needs in several places (``conversation``,
``channelData``, mention entities); the rest of the adapter reads this
dataclass instead, so handlers and tests deal with one shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microsoft_agents.activity import Activity

from adapters.teams.directory import Profile, user_key
from adapters.teams.ids import channel_part, root_part
from adapters.teams.text import strip_mention

NO_TENANT = "-"  # local development (Emulator, tests without tenant data)


@dataclass(frozen=True)
class Inbound:
    id: str
    type: str
    conversation_id: str
    conversation_type: str | None  # personal | channel | groupChat
    tenant_id: str
    team_id: str | None
    team_name: str | None
    channel_id: str | None  # the Teams channel, for channel conversations
    channel_name: str | None
    service_url: str | None
    sender: Profile
    sender_channel_id: str | None  # the Bot Framework id (29:...), for member lookups
    from_bot: bool
    bot_id: str | None
    bot_name: str | None
    text: str  # the bot's own @mention removed
    mentions_bot: bool
    value: Any
    reply_to_id: str | None
    event_type: str | None  # channelData.eventType (channelDeleted, teamDeleted, editMessage...)

    @property
    def personal(self) -> bool:
        return self.conversation_type == "personal"

    @property
    def chain_id(self) -> str | None:
        """The reply chain the activity belongs to (``channel;messageid=ROOT``), if any."""
        return self.conversation_id if root_part(self.conversation_id) else None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def read_inbound(activity: Activity) -> Inbound:
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    conversation = activity.conversation
    sender = activity.from_property
    recipient = activity.recipient
    bot_id = recipient.id if recipient else None
    text = activity.text or ""
    mentions_bot = False
    for mention in activity.get_mentions() if activity.entities else []:
        if mention.mentioned and bot_id and mention.mentioned.id == bot_id:
            mentions_bot = True
            if mention.text:
                text = text.replace(mention.text, " ")
    if recipient and recipient.name:
        # Teams sometimes sends the mention tag without an entity (or with another casing).
        stripped = strip_mention(text, recipient.name)
        mentions_bot = mentions_bot or stripped != text.strip()
        text = stripped
    tenant = (
        _get(channel_data, "tenant", "id")
        or (conversation.tenant_id if conversation else None)
        or NO_TENANT
    )
    conversation_id = conversation.id if conversation else ""
    channel_id = _get(channel_data, "channel", "id")
    conversation_type = conversation.conversation_type if conversation else None
    if channel_id is None and conversation_type == "channel":
        channel_id = channel_part(conversation_id)
    return Inbound(
        id=activity.id or "",
        type=str(activity.type or ""),
        conversation_id=conversation_id,
        conversation_type=conversation_type,
        tenant_id=str(tenant),
        team_id=_get(channel_data, "team", "id"),
        team_name=_get(channel_data, "team", "name"),
        channel_id=channel_id,
        channel_name=_get(channel_data, "channel", "name"),
        service_url=activity.service_url,
        sender=Profile(
            user_id=user_key(sender.id if sender else None, sender.aad_object_id if sender else None),
            name=(sender.name if sender and sender.name else "Teams user"),
        ),
        sender_channel_id=sender.id if sender else None,
        from_bot=bool(sender and (sender.role == "bot" or (bot_id and sender.id == bot_id))),
        bot_id=bot_id,
        bot_name=recipient.name if recipient else None,
        text=text.strip(),
        mentions_bot=mentions_bot,
        value=activity.value,
        reply_to_id=activity.reply_to_id,
        event_type=_get(channel_data, "eventType"),
    )
