"""Agents: who answers chats, and whether they are on duty.

Every change publishes ``AGENTS_CHANGED`` after its transaction commits, so a
widget flips online or offline the moment an agent comes or goes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from adapters.api import params
from adapters.api.operation import Body, Operation, Reply, ref
from adapters.api.pages import newest_first, paged
from adapters.http import read_json, services
from core import events as ev
from core.agents import agent_to_json, create_agent, get_agent
from core.errors import Conflict
from core.models import Agent

WHAT = "agent"


@asynccontextmanager
async def _unique_email() -> AsyncIterator[None]:
    """Two requests racing past core's duplicate check still get a 409, not a 500."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict("an agent with this email already exists") from exc


async def _changed(request: web.Request, agent_id: int) -> None:
    await services(request).bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent_id})


async def list_agents(request: web.Request) -> web.Response:
    limit, before = params.limit(request), params.cursor(request)
    async with services(request).db.read() as session:
        rows = await newest_first(session, Agent, before, limit)
    return paged(rows, limit, agent_to_json)


async def create(request: web.Request) -> web.Response:
    data = await read_json(request)
    async with _unique_email(), services(request).db.write() as session:
        agent = await create_agent(session, data)
    await _changed(request, agent.id)
    return web.json_response(agent_to_json(agent), status=201)


async def get(request: web.Request) -> web.Response:
    agent_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        agent = await get_agent(session, agent_id)
    return web.json_response(agent_to_json(agent))


async def update(request: web.Request) -> web.Response:
    """Through the chat service, which publishes the change itself."""
    agent_id = params.path_id(request, WHAT)
    data = await read_json(request)
    async with _unique_email():
        agent = await services(request).chat.update_agent(agent_id, data)
    return web.json_response(agent_to_json(agent))


async def delete(request: web.Request) -> web.Response:
    """Their past messages stay, without the link to the agent."""
    agent_id = params.path_id(request, WHAT)
    async with services(request).db.write() as session:
        await session.delete(await get_agent(session, agent_id))
    await _changed(request, agent_id)
    return web.Response(status=204)


_ITEM = "/api/v1/agents/{id}"
_TAG = "agents"

OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/agents", list_agents, "listAgents", "List agents, newest first", _TAG,
        Reply(200, ref("AgentList"), "A page of agents."),
        params=(params.LIMIT, params.CURSOR),
    ),
    Operation(
        "POST", "/api/v1/agents", create, "createAgent", "Add an agent", _TAG,
        Reply(201, ref("Agent"), "The new agent."),
        body=Body(ref("AgentCreate"), "`name` and `email` are required; emails are unique."),
        conflicts=True,
    ),
    Operation(
        "GET", _ITEM, get, "getAgent", "Get an agent", _TAG,
        Reply(200, ref("Agent"), "The agent."),
    ),
    Operation(
        "PATCH", _ITEM, update, "updateAgent", "Change an agent (e.g. put them on or off duty)", _TAG,
        Reply(200, ref("Agent"), "The updated agent."),
        body=Body(ref("AgentUpdate"), "The fields to change. Going on duty counts as being seen now."),
        conflicts=True,
    ),
    Operation(
        "DELETE", _ITEM, delete, "deleteAgent", "Remove an agent", _TAG,
        Reply(204, None, "Deleted."),
    ),
]
