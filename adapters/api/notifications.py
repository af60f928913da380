"""Who is notified how: a widget's digest schedule and visitor emails, and an
agent's Pushover key."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Reply, ref
from adapters.http import read_json, services
from core.agents import get_agent
from core.errors import ValidationFailed
from core.notify_settings import get_settings, settings_to_json, update_settings
from core.pushover import clear_user_key, set_user_key, user_key_of
from core.validation import reject_unknown
from core.widgets import get_widget

TAG = "notifications"


async def get_widget_settings(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id)
        values = await get_settings(session, widget_id)
    return web.json_response(settings_to_json(widget, values))


async def update_widget_settings(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    data = await read_json(request)
    async with services(request).db.write() as session:
        widget = await get_widget(session, widget_id)
        values = await update_settings(session, widget, data)
    return web.json_response(settings_to_json(widget, values))


def _pushover_json(agent_id: int, key: str | None) -> dict[str, Any]:
    return {"agent_id": agent_id, "configured": key is not None, "user_key_hint": key[-4:] if key else None}


async def get_pushover(request: web.Request) -> web.Response:
    agent_id = params.path_id(request, "agent")
    async with services(request).db.read() as session:
        await get_agent(session, agent_id)
        key = await user_key_of(session, agent_id)
    return web.json_response(_pushover_json(agent_id, key))


async def put_pushover(request: web.Request) -> web.Response:
    agent_id = params.path_id(request, "agent")
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    reject_unknown(data, {"user_key"})
    async with services(request).db.write() as session:
        row = await set_user_key(session, await get_agent(session, agent_id), data.get("user_key"))
    return web.json_response(_pushover_json(agent_id, row.user_key))


async def delete_pushover(request: web.Request) -> web.Response:
    agent_id = params.path_id(request, "agent")
    async with services(request).db.write() as session:
        await clear_user_key(session, await get_agent(session, agent_id))
    return web.Response(status=204)


OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/widgets/{id}/notifications", get_widget_settings, "getWidgetNotifications",
        "Get a widget's digest and visitor-email settings", TAG,
        Reply(200, ref("NotificationSettings"), "The settings (defaults when never changed) and the next digest time."),
    ),
    Operation(
        "PATCH", "/api/v1/widgets/{id}/notifications", update_widget_settings, "updateWidgetNotifications",
        "Change a widget's digest and visitor-email settings", TAG,
        Reply(200, ref("NotificationSettings"), "The updated settings."),
        body=Body(ref("NotificationSettingsUpdate"), "Only the fields to change."),
        description="Digests summarise the offline messages since the previous digest, unhandled first. "
        "Default: daily at 09:00 in the widget's time zone, posted to its bound channels.",
    ),
    Operation(
        "GET", "/api/v1/agents/{id}/pushover", get_pushover, "getAgentPushover",
        "Whether an agent gets Pushover notifications", TAG,
        Reply(200, ref("AgentPushover"), "The agent's Pushover setting (the key is not shown)."),
    ),
    Operation(
        "PUT", "/api/v1/agents/{id}/pushover", put_pushover, "putAgentPushover",
        "Set an agent's Pushover user key", TAG,
        Reply(200, ref("AgentPushover"), "The agent's Pushover setting."),
        body=Body(ref("AgentPushoverUpdate"), "The 30-character user (or group) key from the Pushover app."),
        description="Pushes go out for new chats and offline messages while the agent is on duty and "
        "either stay-available or away from the screen (session lapsed).",
    ),
    Operation(
        "DELETE", "/api/v1/agents/{id}/pushover", delete_pushover, "deleteAgentPushover",
        "Stop Pushover notifications for an agent", TAG,
        Reply(204, None, "Removed."),
    ),
]
