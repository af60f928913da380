"""The dashboard's front page: every widget's live status and what needs attention."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from adapters.admin.auth import page
from adapters.admin.pages.widgets import describe_status
from adapters.admin.render import render
from adapters.http import services
from core.agents import agent_to_json
from core.models import Agent, ChannelBinding, OfflineMessage, Widget
from core.outbox import counts_by_status

NAV = ("Overview", "/admin")


@page
async def show(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.db.read() as session:
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
        agents = [agent_to_json(a) for a in (await session.execute(select(Agent))).scalars()]
        unhandled = int((await session.execute(select(func.count(OfflineMessage.id)).where(OfflineMessage.status == "new"))).scalar_one())
        broken = int((await session.execute(select(func.count(ChannelBinding.id)).where(ChannelBinding.status != "ok"))).scalar_one())
        outbox = await counts_by_status(session)
    rows = [{"widget": w, "status": describe_status(await svc.watcher.status_of(w))} for w in widgets]
    return render(
        request, "overview.html", title="Overview", rows=rows,
        agents_on_duty=sum(1 for a in agents if a["on_duty"]), agents_available=sum(1 for a in agents if a["available"]),
        agents_total=len(agents), unhandled=unhandled, broken=broken, dead=outbox.get("dead", 0),
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/admin", show)
    router.add_get("/admin/", _to_admin)


async def _to_admin(_request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/admin"})
