"""A widget's business hours: time zone, ranges per day, exceptions, and a 7-day preview.

The preview is core's answer, not a re-implementation: each hour of the next
seven days is evaluated by ``core.availability.widget_status`` with the
schedule being edited and the agents as they are now. The page re-asks for it
while you type (``admin.js``); without JavaScript the Preview button does the same.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select

from adapters.admin import forms
from adapters.admin.auth import action, page
from adapters.admin.pages.widgets import describe_status, widget_id
from adapters.admin.render import ENV, redirect, render
from adapters.http import services
from core import events as ev
from core.agents import agent_state
from core.availability import AgentState, widget_status
from core.clock import utcnow
from core.errors import ValidationFailed
from core.models import Agent, Widget
from core.schedule import DAYS, Schedule, ScheduleError, next_opening, parse_schedule, schedule_to_json
from core.status import widget_settings
from core.widgets import get_widget, update_widget

NAV = None  # reached from each widget's page
DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")))
STATE_LABEL = {
    "online": "Online",
    "no_agent": "Open, nobody available (agents as they are now)",
    "closed": "Closed (outside business hours)",
    "disabled": "Widget switched off",
}


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    return sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")


# ---------------------------------------------------------------- form <-> schedule JSON


def _pairs(text: str) -> list[list[str]]:
    """``"09:00-12:00, 13:00-17:00"`` as ranges; malformed pieces go to core to be named."""
    out = []
    for piece in text.replace(";", ",").split(","):
        piece = piece.strip()
        if not piece:
            continue
        start, _, end = piece.replace("–", "-").partition("-")
        out.append([start.strip(), end.strip()])
    return out


def schedule_from_form(form: MultiDictProxy[Any]) -> dict[str, Any] | None:
    """The schedule JSON the form describes (None: always within hours); not yet validated."""
    if forms.checked(form, "always_open"):
        return None
    weekly: dict[str, list[list[str]]] = {}
    for day in DAYS:
        starts, ends = forms.all_values(form, f"{day}_start"), forms.all_values(form, f"{day}_end")
        weekly[day] = [[s, e] for s, e in zip(starts, ends) if s or e]
    exceptions: list[dict[str, Any]] = []
    for date, hours in zip(forms.all_values(form, "exc_date"), forms.all_values(form, "exc_hours")):
        if not date and not hours:
            continue
        pairs = _pairs(hours)
        exceptions.append({"date": date, "hours": pairs} if pairs else {"date": date, "closed": True})
    return {"timezone": forms.text(form, "timezone") or "UTC", "weekly": weekly, "exceptions": exceptions}


def editor_values(data: dict[str, Any] | None, fallback_zone: str = "UTC") -> dict[str, Any]:
    """What the editor shows for schedule JSON (valid or not): one blank row to type into."""
    if data is None:
        return {
            "always_open": True,
            "timezone": fallback_zone,
            "days": [{"key": d, "name": DAY_NAMES[d], "ranges": [["09:00", "17:00"]] if i < 5 else [["", ""]]} for i, d in enumerate(DAYS)],
            "exceptions": [{"date": "", "hours": ""}],
        }
    weekly = data.get("weekly") or {}
    days = []
    for d in DAYS:
        ranges = [list(r) for r in weekly.get(d, [])]
        days.append({"key": d, "name": DAY_NAMES[d], "ranges": ranges or [["", ""]]})
    exceptions = [
        {"date": e.get("date", ""), "hours": "" if e.get("closed") else ", ".join(f"{a}-{b}" for a, b in e.get("hours", []))}
        for e in data.get("exceptions") or []
    ]
    return {
        "always_open": False,
        "timezone": data.get("timezone") or fallback_zone,
        "days": days,
        "exceptions": exceptions + [{"date": "", "hours": ""}],
    }


def _parse(data: dict[str, Any] | None) -> Schedule | None:
    if data is None:
        return None
    try:
        return parse_schedule(data)
    except ScheduleError as exc:
        path, _, detail = str(exc).partition(": ")
        raise ValidationFailed(_readable(str(exc)), fields={path: detail or str(exc)}) from exc


def _readable(message: str) -> str:
    """``weekly.mon[0]: ...`` as ``Monday, range 1: ...``."""
    path, sep, detail = message.partition(": ")
    for day, name in DAY_NAMES.items():
        if path.startswith(f"weekly.{day}"):
            rest = path[len(f"weekly.{day}"):]
            if rest.startswith("[") and "]" in rest:
                return f"{name}, range {int(rest[1:rest.index(']')]) + 1}{sep}{detail}"
            return f"{name}{sep}{detail}"
    if path.startswith("exceptions[") and "]" in path:
        n = int(path[len("exceptions["):path.index("]")]) + 1
        return f"Exception {n}{sep}{detail}"
    return message


# ---------------------------------------------------------------- the preview


def preview(widget: Widget, schedule: Schedule | None, agents: list[AgentState], now: datetime) -> dict[str, Any]:
    """Status at the start of every local hour of the next 7 days, as core computes it."""
    zone = zoneinfo.ZoneInfo(schedule.timezone if schedule else "UTC")
    settings = widget_settings(widget, schedule)
    local_now = now.astimezone(zone)
    days = []
    for i in range(7):
        day = local_now.date() + timedelta(days=i)
        cells = []
        for hour in range(24):
            at = datetime.combine(day, time(hour), tzinfo=zone).astimezone(timezone.utc)
            st = widget_status(settings, agents, at)
            if st.online:
                state = "online"
            elif st.reason == "no_agent_available":
                state = "no_agent"
            else:
                state = "closed" if st.reason == "outside_schedule" else "disabled"
            cells.append({
                "hour": hour,
                "state": state,
                "now": i == 0 and hour == local_now.hour,
                "label": f"{day:%a %d %b} {hour:02d}:00 — {STATE_LABEL[state]}",
            })
        days.append({"label": f"{day:%a %d %b}", "cells": cells})
    opening = next_opening(schedule, now) if schedule is not None else None
    return {
        "zone": zone.key,
        "days": days,
        "now": widget_status(settings, agents, now),
        "next_opening": opening.astimezone(zone) if opening else None,
        "legend": STATE_LABEL,
    }


async def _agents(request: web.Request) -> list[AgentState]:
    async with services(request).db.read() as session:
        return [agent_state(a) for a in (await session.execute(select(Agent))).scalars()]


def _preview_html(data: dict[str, Any]) -> str:
    return ENV.get_template("_schedule_preview.html").render(preview=data, now_status=describe_status(data["now"]))


async def _page(
    request: web.Request, widget: Widget, data: dict[str, Any] | None, *, error: str | None = None, status: int = 200
) -> web.Response:
    zone = (widget.schedule or {}).get("timezone", "UTC")
    values = editor_values(data, zone)
    schedule = None
    if error is None:
        schedule = _parse(data)
    else:  # show the preview of what is stored while the draft has a mistake
        schedule = _parse(widget.schedule)
    pv = preview(widget, schedule, await _agents(request), utcnow())
    return render(
        request, "schedule.html", status=status, title=f"Business hours · {widget.name}",
        widget=widget, values=values, zones=timezones(), error=error, preview_html=_preview_html(pv),
    )


@page
async def show(request: web.Request) -> web.Response:
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id(request))
    return await _page(request, widget, widget.schedule)


@action
async def save(request: web.Request) -> web.Response:
    svc = services(request)
    form = await request.post()
    wid = widget_id(request)
    data = schedule_from_form(form)
    async with svc.db.read() as session:
        widget = await get_widget(session, wid)
    try:
        parsed = _parse(data)
    except ValidationFailed as exc:
        return await _page(request, widget, data, error=exc.message, status=422)
    if forms.text(form, "do") == "preview":  # the no-JavaScript preview: show, do not store
        return await _page(request, widget, data)
    stored = schedule_to_json(parsed) if parsed is not None else None
    async with svc.db.write() as session:
        await update_widget(session, await get_widget(session, wid), {"schedule": stored})
    await svc.bus.publish(ev.WIDGET_CHANGED, {"widget_id": wid})
    return redirect(f"/admin/widgets/{wid}/schedule", "saved")


@action
async def live_preview(request: web.Request) -> web.Response:
    """The preview fragment for the draft in the form (fetched by admin.js while typing)."""
    form = await request.post()
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id(request))
    try:
        schedule = _parse(schedule_from_form(form))
    except ValidationFailed as exc:
        return web.Response(status=422, text=exc.message, content_type="text/plain")
    body = _preview_html(preview(widget, schedule, await _agents(request), utcnow()))
    return web.Response(text=body, content_type="text/html", charset="utf-8")


def add_routes(router: web.UrlDispatcher) -> None:
    item = r"/admin/widgets/{id:\d{1,18}}/schedule"
    router.add_get(item, show)
    router.add_post(item, save)
    router.add_post(item + "/preview", live_preview)
