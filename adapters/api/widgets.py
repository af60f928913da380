"""Widgets: settings, business-hours schedule and live status.

Every change publishes ``WIDGET_CHANGED`` after its transaction commits, so
the status watcher recomputes and open widgets flip without a page refresh.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Param, Reply, nullable, ref
from adapters.api.pages import newest_first, paged
from adapters.http import read_json, services
from core import events as ev
from core.clock import utcnow
from core.errors import ValidationFailed
from core.models import Widget
from core.schedule import ScheduleError, parse_schedule, schedule_to_json
from core.widgets import create_widget, get_widget, update_widget, widget_to_json

WHAT = "widget"
AT = Param(
    "at",
    {"type": "string", "format": "date-time"},
    "Preview the status at this ISO-8601 instant (offset required) instead of now.",
)


async def _changed(request: web.Request, widget_id: int) -> None:
    await services(request).bus.publish(ev.WIDGET_CHANGED, {"widget_id": widget_id})


async def list_widgets(request: web.Request) -> web.Response:
    limit, before = params.limit(request), params.cursor(request)
    async with services(request).db.read() as session:
        rows = await newest_first(session, Widget, before, limit)
    return paged(rows, limit, widget_to_json)


async def create(request: web.Request) -> web.Response:
    data = await read_json(request)
    async with services(request).db.write() as session:
        widget = await create_widget(session, data)
    await _changed(request, widget.id)
    return web.json_response(widget_to_json(widget), status=201)


async def get(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id)
    return web.json_response(widget_to_json(widget))


async def update(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, WHAT)
    data = await read_json(request)
    async with services(request).db.write() as session:
        widget = await update_widget(session, await get_widget(session, widget_id), data)
    await _changed(request, widget_id)
    return web.json_response(widget_to_json(widget))


async def delete(request: web.Request) -> web.Response:
    """Deletes the widget with its conversations and offline messages."""
    widget_id = params.path_id(request, WHAT)
    async with services(request).db.write() as session:
        await session.delete(await get_widget(session, widget_id))
    await _changed(request, widget_id)
    return web.Response(status=204)


async def get_schedule(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id)
    return web.json_response(widget.schedule)


def _parse(data: Any) -> dict[str, Any] | None:
    """The schedule in its normal form; errors name the path inside the body."""
    if data is None:
        return None
    try:
        return schedule_to_json(parse_schedule(data))
    except ScheduleError as exc:
        path, _, detail = str(exc).partition(": ")
        raise ValidationFailed(str(exc), fields={path: detail or str(exc)}) from exc


async def put_schedule(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, WHAT)
    schedule = _parse(await read_json(request))
    async with services(request).db.write() as session:
        widget = await update_widget(session, await get_widget(session, widget_id), {"schedule": schedule})
    await _changed(request, widget_id)
    return web.json_response(widget.schedule)


async def get_status(request: web.Request) -> web.Response:
    """Computed fresh (not the watcher's cache) so a change made a moment ago shows."""
    widget_id = params.path_id(request, WHAT)
    svc = services(request)
    at = params.instant(request, "at")
    async with svc.db.read() as session:
        widget = await get_widget(session, widget_id)
    status = await svc.watcher.status_of(widget, at=at or utcnow())
    return web.json_response(status.to_json())


_ITEM = "/api/v1/widgets/{id}"
_TAG = "widgets"

OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/widgets", list_widgets, "listWidgets", "List widgets, newest first", _TAG,
        Reply(200, ref("WidgetList"), "A page of widgets."),
        params=(params.LIMIT, params.CURSOR),
    ),
    Operation(
        "POST", "/api/v1/widgets", create, "createWidget", "Create a widget", _TAG,
        Reply(201, ref("Widget"), "The new widget, with its public key."),
        body=Body(ref("WidgetCreate"), "Settings; only `name` is required, the rest have defaults."),
    ),
    Operation(
        "GET", _ITEM, get, "getWidget", "Get a widget", _TAG,
        Reply(200, ref("Widget"), "The widget."),
    ),
    Operation(
        "PATCH", _ITEM, update, "updateWidget", "Change widget settings", _TAG,
        Reply(200, ref("Widget"), "The updated widget."),
        body=Body(ref("WidgetUpdate"), "The settings to change; others keep their value."),
    ),
    Operation(
        "DELETE", _ITEM, delete, "deleteWidget", "Delete a widget", _TAG,
        Reply(204, None, "Deleted, with its conversations and offline messages."),
    ),
    Operation(
        "GET", _ITEM + "/schedule", get_schedule, "getWidgetSchedule", "Get the business-hours schedule", _TAG,
        Reply(200, nullable(ref("Schedule")), "The schedule, or null when the widget is always within hours."),
    ),
    Operation(
        "PUT", _ITEM + "/schedule", put_schedule, "putWidgetSchedule", "Replace the business-hours schedule", _TAG,
        Reply(200, nullable(ref("Schedule")), "The stored schedule in normal form (all seven days listed)."),
        body=Body(nullable(ref("Schedule")), "The new schedule, or null to remove it (always within hours)."),
    ),
    Operation(
        "GET", _ITEM + "/status", get_status, "getWidgetStatus", "Whether the widget is online, and why", _TAG,
        Reply(200, ref("WidgetStatus"), "The status now, or at `at`."),
        params=(AT,),
    ),
]
