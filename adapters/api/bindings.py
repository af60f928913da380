"""A widget's channel bindings: which Slack or Teams channel receives its chats.

``/chat-setup`` in Slack and ``@deskbell setup`` in Teams do the same from
inside the channel; this is for scripted set-ups. The API stores the binding;
`deskbell doctor` and ``/readyz`` tell whether the bot can post there.
"""

from __future__ import annotations

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Reply
from adapters.api.pages import list_response
from adapters.http import read_json, services
from core.bindings import PLATFORMS, bind_channel, binding_to_json, bindings_for_widget, clean_binding, unbind_channel
from core.errors import NotFound
from core.widgets import get_widget

TAG = "channels"
BINDING = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "widget_id", "platform", "workspace_id", "channel_id", "status"],
    "properties": {
        "id": {"type": "integer"},
        "widget_id": {"type": "integer"},
        "platform": {"enum": list(PLATFORMS)},
        "workspace_id": {"type": "string", "description": "Slack team id (T...) or Teams tenant id."},
        "channel_id": {"type": "string"},
        "channel_name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "status": {"enum": ["ok", "broken"]},
        "status_detail": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
BINDING_PUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["channel_id", "workspace_id"],
    "properties": {
        "channel_id": {"type": "string", "maxLength": 200, "description": "Slack C...; Teams 19:...@thread.tacv2"},
        "workspace_id": {"type": "string", "maxLength": 100, "description": "Slack team id, or Teams tenant id."},
        "channel_name": {"type": "string", "maxLength": 200},
        "service_url": {"type": "string", "description": "Teams only (required there): the team's Bot Framework service URL."},
        "team_id": {"type": "string", "description": "Teams only: the team id."},
    },
}
BINDING_LIST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items", "next_cursor"],
    "properties": {"items": {"type": "array", "items": BINDING}, "next_cursor": {"type": "null"}},
}


def _platform(request: web.Request) -> str:
    platform = request.match_info["platform"]
    if platform not in PLATFORMS:
        raise NotFound(f"no platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    return platform


async def list_bindings(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    async with services(request).db.read() as session:
        await get_widget(session, widget_id)
        bindings = await bindings_for_widget(session, widget_id)
    return list_response((binding_to_json(b) for b in bindings), None)


async def put_binding(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    platform = _platform(request)
    fields = clean_binding(platform, await read_json(request))
    async with services(request).db.write() as session:
        await get_widget(session, widget_id)
        binding = await bind_channel(session, widget_id, platform, **fields)
    return web.json_response(binding_to_json(binding))


async def delete_binding(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    platform = _platform(request)
    async with services(request).db.write() as session:
        await get_widget(session, widget_id)
        if not await unbind_channel(session, widget_id, platform):
            raise NotFound(f"widget {widget_id} has no {platform} channel")
    return web.Response(status=204)


OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/widgets/{id}/channels", list_bindings, "listWidgetChannels",
        "List the Slack and Teams channels a widget's chats go to", TAG,
        Reply(200, BINDING_LIST, "The widget's bindings, with their health."),
    ),
    Operation(
        "PUT", "/api/v1/widgets/{id}/channels/{platform}", put_binding, "bindWidgetChannel",
        "Bind the widget's channel on a platform (slack or teams), replacing any earlier one", TAG,
        Reply(200, BINDING, "The binding."),
        body=Body(BINDING_PUT, "Where to post; Teams also needs `service_url`."),
    ),
    Operation(
        "DELETE", "/api/v1/widgets/{id}/channels/{platform}", delete_binding, "unbindWidgetChannel",
        "Stop relaying the widget's chats to that platform", TAG,
        Reply(204, None, "Unbound."),
    ),
]
