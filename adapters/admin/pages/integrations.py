"""Integrations: which Slack/Teams channel each widget's chats go to, and whether it works.

Bindings are made from the chat platform itself (``/chat-setup KEY`` in
Slack, ``@deskbell setup KEY`` in Teams); this page shows them with their
health (``core.bindings``: ``ok`` or ``broken`` with the reason) and the
service's own dependency checks (the same ones ``/readyz`` runs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import select

from adapters.admin.auth import action, page
from adapters.admin.render import redirect, render
from adapters.http import services
from core.bindings import get_binding
from core.models import ChannelBinding, Widget

NAV = ("Integrations", "/admin/integrations")
PLATFORMS = {"slack": "Slack", "teams": "Microsoft Teams"}


async def _checks(request: web.Request) -> list[dict[str, Any]]:
    out = []
    for name, check in services(request).health_checks.items():
        try:
            await asyncio.wait_for(check(), timeout=5)
            out.append({"name": name, "ok": True, "detail": ""})
        except Exception as exc:  # shown to the admin, as /readyz does
            out.append({"name": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]})
    return out


@page
async def show(request: web.Request) -> web.Response:
    async with services(request).db.read() as session:
        bindings = list((await session.execute(select(ChannelBinding).order_by(ChannelBinding.widget_id, ChannelBinding.platform))).scalars())
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
    names = {w.id: w.name for w in widgets}
    rows = [{"b": b, "widget": names.get(b.widget_id, f"#{b.widget_id}"), "platform": PLATFORMS.get(b.platform, b.platform)} for b in bindings]
    bound = {b.widget_id for b in bindings}
    return render(
        request, "integrations.html", title="Integrations", rows=rows, checks=await _checks(request),
        unbound=[w for w in widgets if w.id not in bound],
    )


@action
async def unbind(request: web.Request) -> web.Response:
    """Stop relaying a widget's chats to that channel (bind again from the platform)."""
    async with services(request).db.write() as session:
        await session.delete(await get_binding(session, int(request.match_info["id"])))
    return redirect("/admin/integrations", "deleted")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/admin/integrations", show)
    router.add_post(r"/admin/integrations/{id:\d{1,18}}/delete", unbind)
