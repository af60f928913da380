"""Agents: who answers, duty and stay-available switches, Pushover keys, platform identities.

Duty and availability changes go through ``services.chat`` (which publishes
``AGENTS_CHANGED``), so widgets flip the moment the switch is pressed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from adapters.admin import forms
from adapters.admin.auth import action, page
from adapters.admin.render import redirect, render
from adapters.http import services
from core import events as ev
from core.agents import agent_to_json, create_agent, get_agent, issue_token
from core.errors import Conflict, ValidationFailed
from core.models import Agent, AgentIdentity, AgentPushover, Widget
from core.pushover import clear_user_key, set_user_key

NAV = ("Agents", "/admin/agents")


def agent_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _rows(request: web.Request) -> list[dict[str, Any]]:
    async with services(request).db.read() as session:
        agents = list((await session.execute(select(Agent).order_by(Agent.name, Agent.id))).scalars())
        identities: dict[int, list[AgentIdentity]] = {}
        for ident in (await session.execute(select(AgentIdentity).order_by(AgentIdentity.id))).scalars():
            identities.setdefault(ident.agent_id, []).append(ident)
        pushover = {row.agent_id: row.user_key for row in (await session.execute(select(AgentPushover))).scalars()}
        widgets = {w.id: w.name for w in (await session.execute(select(Widget))).scalars()}
    return [
        {
            "agent": a,
            "json": agent_to_json(a),
            "identities": identities.get(a.id, []),
            "pushover": pushover.get(a.id, ""),
            "serves": "every widget" if a.widget_ids is None else ", ".join(widgets.get(i, f"#{i}") for i in a.widget_ids) or "no widget",
        }
        for a in agents
    ]


async def _page(request: web.Request, *, status: int = 200, errors: dict[str, str] | None = None,
                new: dict[str, str] | None = None, link: dict[str, str] | None = None) -> web.Response:
    return render(
        request, "agents.html", status=status, title="Agents", rows=await _rows(request),
        errors=errors or {}, new=new or {"name": "", "email": ""}, link=link,
    )


@page
async def list_agents(request: web.Request) -> web.Response:
    return await _page(request)


@action
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    new = {"name": forms.text(form, "name"), "email": forms.text(form, "email")}
    svc = services(request)
    try:
        async with svc.db.write() as session:
            agent = await create_agent(session, new)
    except ValidationFailed as exc:
        return await _page(request, status=422, errors=exc.fields or {"name": exc.message}, new=new)
    except (Conflict, IntegrityError):
        return await _page(request, status=409, errors={"email": "an agent with this email already exists"}, new=new)
    await svc.bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent.id})
    return redirect("/admin/agents", "created")


@action
async def duty(request: web.Request) -> web.Response:
    form = await request.post()
    await services(request).chat.set_duty(agent_id(request), forms.text(form, "on_duty") == "1")
    return redirect("/admin/agents", "duty")


@action
async def stay(request: web.Request) -> web.Response:
    form = await request.post()
    await services(request).chat.update_agent(agent_id(request), {"stay_available": forms.text(form, "stay_available") == "1"})
    return redirect("/admin/agents", "duty")


@action
async def pushover(request: web.Request) -> web.Response:
    form = await request.post()
    key = forms.text(form, "user_key")
    try:
        async with services(request).db.write() as session:
            agent = await get_agent(session, agent_id(request))
            if key:
                await set_user_key(session, agent, key)
            else:
                await clear_user_key(session, agent)
    except ValidationFailed as exc:
        return await _page(request, status=422, errors={f"pushover_{agent_id(request)}": exc.fields.get("user_key", exc.message)})
    return redirect("/admin/agents", "pushover")


@action
async def sign_in_link(request: web.Request) -> web.Response:
    """A console sign-in link for the agent, shown once on the page."""
    async with services(request).db.write() as session:
        agent = await get_agent(session, agent_id(request))
        token = await issue_token(session, agent, "login")
    base = services(request).public_url or f"{request.scheme}://{request.host}"
    return await _page(request, link={"name": agent.name, "url": f"{base}/console/login?token={token}"})


@action
async def delete(request: web.Request) -> web.Response:
    aid = agent_id(request)
    svc = services(request)
    async with svc.db.write() as session:
        await session.delete(await get_agent(session, aid))
    await svc.bus.publish(ev.AGENTS_CHANGED, {"agent_id": aid})
    return redirect("/admin/agents", "deleted")


def add_routes(router: web.UrlDispatcher) -> None:
    item = r"/admin/agents/{id:\d{1,18}}"
    router.add_get("/admin/agents", list_agents)
    router.add_post("/admin/agents", create)
    router.add_post(item + "/duty", duty)
    router.add_post(item + "/stay", stay)
    router.add_post(item + "/pushover", pushover)
    router.add_post(item + "/link", sign_in_link)
    router.add_post(item + "/delete", delete)
