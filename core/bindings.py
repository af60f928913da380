"""Channel bindings: which platform channel receives a widget's chats."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import iso
from core.errors import NotFound
from core.models import ChannelBinding, ThreadLink


async def bind_channel(
    session: AsyncSession,
    widget_id: int,
    platform: str,
    *,
    workspace_id: str,
    channel_id: str,
    channel_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> ChannelBinding:
    """Bind (or re-bind) the widget's single channel on ``platform``."""
    binding = (
        await session.execute(
            select(ChannelBinding).where(ChannelBinding.widget_id == widget_id, ChannelBinding.platform == platform)
        )
    ).scalar_one_or_none()
    if binding is None:
        binding = ChannelBinding(widget_id=widget_id, platform=platform, workspace_id=workspace_id, channel_id=channel_id)
        session.add(binding)
    binding.workspace_id, binding.channel_id = workspace_id, channel_id
    binding.channel_name = channel_name
    binding.config = config or {}
    binding.status, binding.status_detail = "ok", None
    await session.flush()
    return binding


async def bindings_for_widget(session: AsyncSession, widget_id: int) -> list[ChannelBinding]:
    query = select(ChannelBinding).where(ChannelBinding.widget_id == widget_id).order_by(ChannelBinding.id)
    return list((await session.execute(query)).scalars())


async def bindings_for_channel(
    session: AsyncSession, platform: str, workspace_id: str, channel_id: str
) -> list[ChannelBinding]:
    query = select(ChannelBinding).where(
        ChannelBinding.platform == platform,
        ChannelBinding.workspace_id == workspace_id,
        ChannelBinding.channel_id == channel_id,
    )
    return list((await session.execute(query)).scalars())


async def get_binding(session: AsyncSession, binding_id: int) -> ChannelBinding:
    binding = await session.get(ChannelBinding, binding_id)
    if binding is None:
        raise NotFound(f"no channel binding with id {binding_id}")
    return binding


def mark_broken(binding: ChannelBinding, detail: str) -> None:
    """The channel is gone or the app was removed: show it in /readyz, keep relaying elsewhere."""
    binding.status, binding.status_detail = "broken", detail[:1000]


async def thread_for(session: AsyncSession, conversation_id: int, binding_id: int) -> ThreadLink | None:
    query = select(ThreadLink).where(ThreadLink.conversation_id == conversation_id, ThreadLink.binding_id == binding_id)
    return (await session.execute(query)).scalar_one_or_none()


async def conversation_for_thread(session: AsyncSession, binding_id: int, thread_ref: str) -> int | None:
    query = select(ThreadLink.conversation_id).where(
        ThreadLink.binding_id == binding_id, ThreadLink.thread_ref == thread_ref
    )
    return (await session.execute(query)).scalar_one_or_none()


async def link_thread(
    session: AsyncSession, conversation_id: int, binding_id: int, thread_ref: str, root_ref: str | None = None
) -> ThreadLink:
    link = await thread_for(session, conversation_id, binding_id)
    if link is None:
        link = ThreadLink(conversation_id=conversation_id, binding_id=binding_id, thread_ref=thread_ref, root_ref=root_ref)
        session.add(link)
        await session.flush()
    return link


def binding_to_json(binding: ChannelBinding) -> dict[str, Any]:
    return {
        "id": binding.id,
        "widget_id": binding.widget_id,
        "platform": binding.platform,
        "workspace_id": binding.workspace_id,
        "channel_id": binding.channel_id,
        "channel_name": binding.channel_name,
        "status": binding.status,
        "status_detail": binding.status_detail,
        "created_at": iso(binding.created_at),
    }


PLATFORMS = ("slack", "teams")


def clean_binding(platform: str, data: Any) -> dict[str, Any]:
    """Validate a binding given through the API: what each platform needs to post."""
    from core import validation as v
    from core.errors import ValidationFailed

    if platform not in PLATFORMS:
        raise NotFound(f"no platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    allowed = {"channel_id", "workspace_id", "channel_name"} | ({"service_url", "team_id"} if platform == "teams" else set())
    v.reject_unknown(data, allowed)
    c = v.Checker()
    out = {
        "channel_id": c.check("channel_id", v.text, data.get("channel_id"), max_len=200),
        "workspace_id": c.check("workspace_id", v.text, data.get("workspace_id"), max_len=100),
        "channel_name": c.check("channel_name", v.text, data.get("channel_name"), max_len=200, required=False),
    }
    config: dict[str, Any] = {}
    if platform == "teams":
        service_url = c.check("service_url", v.http_url, data.get("service_url"), required=True)
        if service_url and not service_url.startswith("https://"):
            c.errors["service_url"] = "must be an https URL (the team's Bot Framework service URL)"
        config = {
            "service_url": service_url,
            "tenant_id": out["workspace_id"],
            "team_id": c.check("team_id", v.text, data.get("team_id"), max_len=200, required=False),
        }
    c.done()
    out["config"] = config
    return out


async def unbind_channel(session: AsyncSession, widget_id: int, platform: str) -> bool:
    binding = (
        await session.execute(
            select(ChannelBinding).where(ChannelBinding.widget_id == widget_id, ChannelBinding.platform == platform)
        )
    ).scalar_one_or_none()
    if binding is None:
        return False
    await session.delete(binding)
    return True
