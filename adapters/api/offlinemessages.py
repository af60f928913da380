"""Offline messages: list, read, mark handled (or new again), delete.

The same operations also answer at ``/offlinemessages`` for clients written
against the original service; they are aliases, not copies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Param, Reply, ref
from adapters.api.pages import paged
from adapters.http import read_json, services
from core import validation as v
from core.errors import ValidationFailed
from core.offline import (
    STATUSES,
    get_offline_message,
    list_offline_messages,
    offline_message_to_json,
    set_status,
)

WHAT = "offline message"
STATUS = Param("status", {"enum": list(STATUSES)}, "Only messages with this status.")
SINCE = Param(
    "since",
    {"type": "string", "format": "date-time"},
    "Only messages created at or after this ISO-8601 instant (offset required).",
)


async def list_messages(request: web.Request) -> web.Response:
    limit, before = params.limit(request), params.cursor(request)
    status = params.choice(request, "status", STATUSES)
    since = params.instant(request, "since")
    async with services(request).db.read() as session:
        widget_id = await params.widget_filter(request, session)
        rows = await list_offline_messages(
            session, widget_id=widget_id, status=status, since=since, before_id=before, limit=limit
        )
    return paged(rows, limit, offline_message_to_json)


async def get_message(request: web.Request) -> web.Response:
    message_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        row = await get_offline_message(session, message_id)
    return web.json_response(offline_message_to_json(row))


def _clean_update(data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, {"status"})
    if "status" not in data:
        raise ValidationFailed.of({"status": "is required"})
    return data["status"]


async def update_message(request: web.Request) -> web.Response:
    message_id = params.path_id(request, WHAT)
    status = _clean_update(await read_json(request))
    async with services(request).db.write() as session:
        row = await get_offline_message(session, message_id)
        if status != row.status:  # marking handled twice keeps the first handled_at
            set_status(row, status)
    return web.json_response(offline_message_to_json(row))


async def delete_message(request: web.Request) -> web.Response:
    message_id = params.path_id(request, WHAT)
    async with services(request).db.write() as session:
        await session.delete(await get_offline_message(session, message_id))
    return web.Response(status=204)


_V1 = [
    Operation(
        "GET", "/api/v1/offlinemessages", list_messages, "listOfflineMessages",
        "List offline messages, newest first", "offline messages",
        Reply(200, ref("OfflineMessageList"), "A page of offline messages."),
        params=(params.WIDGET_FILTER, STATUS, SINCE, params.LIMIT, params.CURSOR),
    ),
    Operation(
        "GET", "/api/v1/offlinemessages/{id}", get_message, "getOfflineMessage",
        "Get an offline message", "offline messages",
        Reply(200, ref("OfflineMessage"), "The offline message."),
    ),
    Operation(
        "PATCH", "/api/v1/offlinemessages/{id}", update_message, "updateOfflineMessage",
        "Mark an offline message handled (or new again)", "offline messages",
        Reply(200, ref("OfflineMessage"), "The updated offline message."),
        body=Body(ref("OfflineMessageUpdate"), "Only `status` may be changed."),
    ),
    Operation(
        "DELETE", "/api/v1/offlinemessages/{id}", delete_message, "deleteOfflineMessage",
        "Delete an offline message", "offline messages",
        Reply(204, None, "Deleted."),
    ),
]

_COMPAT = "Compatibility alias of `{path}`, for clients of the original service."

OPERATIONS: list[Operation] = _V1 + [
    op.with_path(
        op.path.removeprefix("/api/v1"),
        op.operation_id + "Compat",
        _COMPAT.format(path=op.path),
    )
    for op in _V1
]
