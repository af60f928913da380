"""Webhooks: endpoints per widget (the secret shown once), test-send, the delivery log, retry dead.

Everything goes through ``core.webhooks`` and ``core.deliveries``; sends are
outbox rows, so the worker delivers them and the log shows each attempt.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from adapters.admin import forms
from adapters.admin.auth import action, page
from adapters.admin.render import redirect, render
from adapters.http import services
from core import events as ev
from core import webhooks as wh
from core.deliveries import delivery_to_json, retry_delivery
from core.errors import Conflict, ValidationFailed
from core.models import DeliveryAttempt, OutboxItem, WebhookEndpoint, Widget
from core.widgets import get_widget

NAV = ("Webhooks", "/admin/webhooks")
LOG_SIZE = 50


async def _log(session: Any) -> list[dict[str, Any]]:
    items = list(
        (await session.execute(select(OutboxItem).where(OutboxItem.kind == wh.KIND).order_by(OutboxItem.id.desc()).limit(LOG_SIZE))).scalars()
    )
    attempts: dict[int, list[DeliveryAttempt]] = {i.id: [] for i in items}
    if items:
        query = select(DeliveryAttempt).where(DeliveryAttempt.outbox_id.in_(list(attempts))).order_by(DeliveryAttempt.number)
        for a in (await session.execute(query)).scalars():
            attempts[a.outbox_id].append(a)
    return [{**delivery_to_json(i, attempts[i.id]), "payload": i.payload or {}} for i in items]


async def _page(request: web.Request, *, status: int = 200, errors: dict[str, str] | None = None,
                new: dict[str, Any] | None = None, created: dict[str, Any] | None = None) -> web.Response:
    async with services(request).db.read() as session:
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
        endpoints = list((await session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id))).scalars())
        log = await _log(session)
    names = {w.id: w.name for w in widgets}
    return render(
        request, "webhooks.html", status=status, title="Webhooks",
        widgets=widgets, endpoints=[{"e": e, "widget": names.get(e.widget_id, f"#{e.widget_id}")} for e in endpoints],
        log=log, event_types=wh.EVENT_TYPES, errors=errors or {}, created=created,
        new=new or {"widget": request.query.get("widget", ""), "url": "", "events": list(wh.EVENT_TYPES)},
    )


@page
async def show(request: web.Request) -> web.Response:
    return await _page(request)


@action
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    widget_ref = forms.text(form, "widget")
    new = {"widget": widget_ref, "url": forms.text(form, "url"), "events": forms.all_values(form, "events")}
    if not widget_ref.isdigit():
        return await _page(request, status=422, errors={"widget": "choose a widget"}, new=new)
    try:
        async with services(request).db.write() as session:
            widget = await get_widget(session, int(widget_ref))
            endpoint = await wh.create_endpoint(session, widget, {"url": new["url"], "events": new["events"]})
            created = {"url": endpoint.url, "secret": endpoint.secret, "widget": widget.name}
    except ValidationFailed as exc:
        return await _page(request, status=422, errors=exc.fields or {"url": exc.message}, new=new)
    return await _page(request, created=created)


def _endpoint_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@action
async def toggle(request: web.Request) -> web.Response:
    form = await request.post()
    async with services(request).db.write() as session:
        endpoint = await wh.get_endpoint(session, _endpoint_id(request))
        await wh.update_endpoint(session, endpoint, {"enabled": forms.text(form, "enabled") == "1"})
    return redirect("/admin/webhooks", "saved")


@action
async def test_send(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.db.write() as session:
        wh.plan_test_event(session, await wh.get_endpoint(session, _endpoint_id(request)))
    await svc.bus.publish(ev.OUTBOX_ENQUEUED, {})
    return redirect("/admin/webhooks", "test_sent")


@action
async def delete(request: web.Request) -> web.Response:
    async with services(request).db.write() as session:
        await session.delete(await wh.get_endpoint(session, _endpoint_id(request)))
    return redirect("/admin/webhooks", "deleted")


@action
async def retry(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        async with svc.db.write() as session:
            await retry_delivery(session, _endpoint_id(request))
    except Conflict:
        return redirect("/admin/webhooks")  # someone retried it already
    await svc.bus.publish(ev.OUTBOX_ENQUEUED, {})
    return redirect("/admin/webhooks", "retried")


def add_routes(router: web.UrlDispatcher) -> None:
    item = r"/admin/webhooks/{id:\d{1,18}}"
    router.add_get("/admin/webhooks", show)
    router.add_post("/admin/webhooks", create)
    router.add_post(item + "/toggle", toggle)
    router.add_post(item + "/test", test_send)
    router.add_post(item + "/delete", delete)
    router.add_post(r"/admin/webhooks/deliveries/{id:\d{1,18}}/retry", retry)
