"""Binding a Slack channel to a widget: the bot must be in the channel to post there.

Public channels are joined (``conversations.join``); a private channel has
to invite the bot first, and the person binding is told exactly that.
Used by ``/chat-setup`` and by ``deskbell widget bind-slack``.
"""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.bindings import bind_channel
from core.errors import Conflict, NotFound, ValidationFailed
from core.models import ChannelBinding, Widget
from core.widgets import find_widget

from adapters.slack.errors import api_error

PLATFORM = "slack"
INVITE = "Invite me first with `/invite @deskbell`, then run `/chat-setup` again."


@dataclass(frozen=True)
class ChannelCheck:
    ok: bool
    name: str | None = None
    joined: bool = False
    problem: str | None = None


async def prepare_channel(client: AsyncWebClient, channel_id: str) -> ChannelCheck:
    """Make sure the bot can post in the channel: join it if public, else explain."""
    if channel_id.startswith("D"):
        return ChannelCheck(False, problem="Run `/chat-setup` in a channel, not in a direct message.")
    try:
        channel = (await client.conversations_info(channel=channel_id))["channel"]
    except SlackApiError as exc:
        if api_error(exc) == "channel_not_found":
            return ChannelCheck(False, problem=f"I can't see this channel: it is private and I'm not in it. {INVITE}")
        raise
    name = channel.get("name")
    if channel.get("is_archived"):
        return ChannelCheck(False, name, problem="This channel is archived; pick another one.")
    if channel.get("is_im") or channel.get("is_mpim"):
        return ChannelCheck(False, name, problem="Run `/chat-setup` in a channel, not in a direct message.")
    if channel.get("is_member"):
        return ChannelCheck(True, name)
    if channel.get("is_private"):
        return ChannelCheck(False, name, problem=f"#{name} is private, so I can't join it by myself. {INVITE}")
    await client.conversations_join(channel=channel_id)
    return ChannelCheck(True, name, joined=True)


async def pick_widget(session: AsyncSession, key: str) -> Widget:
    """The widget named by KEY (or id); without KEY, the only widget there is."""
    if key:
        return await find_widget(session, key)
    widgets = list((await session.execute(select(Widget).order_by(Widget.id).limit(21))).scalars())
    if len(widgets) == 1:
        return widgets[0]
    if not widgets:
        raise NotFound("There is no widget yet: create one with `deskbell widget create NAME`.")
    listed = ", ".join(f"{w.name} (`{w.key}`)" for w in widgets[:20])
    raise NotFound(f"There are several widgets; run `/chat-setup KEY` with one of: {listed}")


async def bind(
    session: AsyncSession, widget: Widget, *, team_id: str, channel_id: str, channel_name: str | None
) -> ChannelBinding:
    return await bind_channel(
        session, widget.id, PLATFORM, workspace_id=team_id, channel_id=channel_id, channel_name=channel_name
    )


async def bind_from_command_line(
    session: AsyncSession,
    client: AsyncWebClient | None,
    *,
    widget_ref: str,
    channel_id: str,
    workspace_id: str | None,
    channel_name: str | None = None,
) -> tuple[Widget, ChannelBinding, ChannelCheck | None]:
    """``deskbell widget bind-slack``: the same checks as ``/chat-setup`` when a token is at hand.

    Without a client (no token configured yet) the binding is stored as
    given; the first post then tells whether the bot can use the channel.
    """
    widget = await find_widget(session, widget_ref)
    check = None
    if client is not None:
        if workspace_id is None:
            workspace_id = str((await client.auth_test())["team_id"])
        check = await prepare_channel(client, channel_id)
        if not check.ok:
            raise Conflict((check.problem or "this channel cannot be used").replace("`/chat-setup`", "`deskbell widget bind-slack`"))
        channel_name = channel_name or check.name
    if not workspace_id:
        raise ValidationFailed.of({"--workspace": "is required when no Slack token is configured (the T... id of the workspace)"})
    binding = await bind(session, widget, team_id=workspace_id, channel_id=channel_id, channel_name=channel_name)
    return widget, binding, check
