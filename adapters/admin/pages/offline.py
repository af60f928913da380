"""Offline messages: list, search, filter, mark handled (one or many), export CSV."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import Select, or_, select

from adapters.admin import forms
from adapters.admin.auth import action, page
from adapters.admin.render import redirect, render
from adapters.http import services
from core.clock import iso
from core.models import OfflineMessage, Widget
from core.offline import STATUSES, get_offline_message, set_status

NAV = ("Offline messages", "/admin/offline")
PAGE_SIZE = 50
CSV_COLUMNS = ("id", "created_at", "widget", "status", "name", "email", "message", "page_url", "handled_at")


def filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    widget = q.get("widget", "")
    status = q.get("status", "")
    before = q.get("before", "")
    return {
        "widget": int(widget) if widget.isdigit() and len(widget) < 19 else None,
        "status": status if status in STATUSES else None,
        "q": q.get("q", "").strip()[:200],
        "before": int(before) if before.isdigit() and len(before) < 19 else None,
    }


def _query(f: dict[str, Any]) -> Select[tuple[OfflineMessage]]:
    query = select(OfflineMessage).order_by(OfflineMessage.id.desc())
    if f["widget"] is not None:
        query = query.where(OfflineMessage.widget_id == f["widget"])
    if f["status"] is not None:
        query = query.where(OfflineMessage.status == f["status"])
    if f["q"]:
        like = "%" + f["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                OfflineMessage.name.ilike(like, escape="\\"),
                OfflineMessage.email.ilike(like, escape="\\"),
                OfflineMessage.message.ilike(like, escape="\\"),
            )
        )
    return query


def _qs(f: dict[str, Any], **override: Any) -> str:
    values = {"widget": f["widget"], "status": f["status"], "q": f["q"], **override}
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


@page
async def list_messages(request: web.Request) -> web.Response:
    f = filters(request)
    query = _query(f)
    if f["before"] is not None:
        query = query.where(OfflineMessage.id < f["before"])
    async with services(request).db.read() as session:
        rows = list((await session.execute(query.limit(PAGE_SIZE + 1))).scalars())
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    names = {w.id: w.name for w in widgets}
    here = "/admin/offline" + ("?" + _qs(f, before=f["before"]) if _qs(f, before=f["before"]) else "")
    return render(
        request, "offline.html", title="Offline messages",
        rows=[{"m": m, "widget": names.get(m.widget_id, f"#{m.widget_id}")} for m in rows],
        widgets=widgets, f=f, statuses=STATUSES, here=here,
        next_url=f"/admin/offline?{_qs(f, before=rows[-1].id)}" if more else None,
        csv_url="/admin/offline.csv" + ("?" + _qs(f) if _qs(f) else ""),
    )


def _back(form: Any) -> str:
    back = forms.text(form, "back")
    return back if back.startswith("/admin/offline") and "//" not in back else "/admin/offline"


@action
async def mark(request: web.Request) -> web.Response:
    """Mark the ticked messages (or the one whose button was pressed) handled or new."""
    form = await request.post()
    status = forms.text(form, "status")
    ids = [int(i) for i in forms.all_values(form, "id") if i.isdigit() and len(i) < 19]
    if status in STATUSES and ids:
        async with services(request).db.write() as session:
            for message_id in ids:
                set_status(await get_offline_message(session, message_id), status)
    return redirect(_back(form), "marked")


def _cell(value: Any) -> str:
    """CSV text that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@page
async def export_csv(request: web.Request) -> web.StreamResponse:
    f = filters(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="offline-messages.csv"',
        }
    )
    await response.prepare(request)
    svc = services(request)
    async with svc.db.read() as session:
        names = {w.id: w.name for w in (await session.execute(select(Widget))).scalars()}
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        before: int | None = None
        while True:  # in pages, so a large export never sits in memory at once
            query = _query(f)
            if before is not None:
                query = query.where(OfflineMessage.id < before)
            batch = list((await session.execute(query.limit(500))).scalars())
            for m in batch:
                writer.writerow([
                    _cell(v) for v in (m.id, iso(m.created_at), names.get(m.widget_id, m.widget_id), m.status,
                                       m.name, m.email, m.message, m.page_url, iso(m.handled_at))
                ])
            await response.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
            if len(batch) < 500:
                break
            before = batch[-1].id
    await response.write_eof()
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/admin/offline", list_messages)
    router.add_post("/admin/offline/mark", mark)
    router.add_get("/admin/offline.csv", export_csv)
