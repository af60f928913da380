"""The Teams adapter as the service runs it: the SDK's CloudAdapter, our bot, outbox handlers, presence.

Transport: ``POST /api/messages`` receives activities. With ``TEAMS_APP_ID``
set, every request must carry a Bot Framework JWT for that app (checked by
the SDK's validator) and a Microsoft ``serviceUrl``; without it requests are
anonymous, for local development with the Bot Framework Emulator or a fake
connector, and the adapter is only built when that is asked for explicitly.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import OutboundHostValidator, TurnContext
from pydantic import ValidationError
from sqlalchemy import select

from core.dispatch import Dispatcher
from core.models import ChannelBinding
from core.services import Services

from adapters.http import error_response
from adapters.teams.auth import ClientCredentials, ClientFactory, TeamsConnections, Unauthorized, authenticate
from adapters.teams.bot import TeamsBot
from adapters.teams.config import TeamsConfig
from adapters.teams.connector import Connector
from adapters.teams.directory import Directory
from adapters.teams.pacing import Pacer
from adapters.teams.presence import GraphPresence, PresencePoller
from adapters.teams.relay import TeamsRelay

log = logging.getLogger(__name__)
MESSAGES_PATH = "/api/messages"
HTTP_TIMEOUT_S = 30


class BrokenChannels(Exception):
    """Some bound Teams channels cannot receive chats; the message says which and what to do."""


async def _raise_turn_error(context: TurnContext, error: Exception) -> None:
    """Replaces the SDK's default, which posts the exception text into the conversation."""
    raise error


class TeamsAdapter:
    """Everything Teams for one process; the HTTP session is made lazily in the running loop."""

    def __init__(self, svc: Services, config: TeamsConfig) -> None:
        self.svc = svc
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self.connections = TeamsConnections(config, self.session)
        self.cloud = CloudAdapter(
            channel_service_client_factory=ClientFactory(self.connections, config.app_id),
            # With auth on, activities must name a Microsoft service URL: replies never go elsewhere.
            host_validator=OutboundHostValidator(enabled=config.auth_enabled),
        )
        self.cloud.on_turn_error = _raise_turn_error
        self.directory = Directory(svc.db)
        self.bot = TeamsBot(svc, self.directory)
        self.connector = Connector(self.cloud, config.app_id)
        self.relay = TeamsRelay(
            svc.db, self.connector, Pacer(config.sends_per_second, config.send_burst), public_url=config.public_url or svc.public_url
        )
        self.presence: PresencePoller | None = None
        if config.graph_presence and config.app_id and config.app_password:
            graph_credentials = ClientCredentials(
                config.app_id, config.app_password, config.token_endpoint(config.tenant_id), self.session
            )
            self.presence = PresencePoller(
                svc, GraphPresence(config.graph_url, graph_credentials, self.session), interval_s=config.presence_interval_s
            )

    def session(self) -> aiohttp.ClientSession:
        """The shared session for token and Graph calls (the SDK makes its own per turn)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        return self._session

    # -- HTTP ---------------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/messages``: authenticate, then let the SDK run the turn on our bot."""
        try:
            claims = await authenticate(request.headers.get("Authorization"), self.connections.configuration)
        except Unauthorized as exc:
            log.warning("refused a Teams activity from %s: %s", request.remote, exc)
            return error_response(401, "unauthorized", str(exc))
        with warnings.catch_warnings():  # the SDK's request adapter looks it up by this string key
            warnings.simplefilter("ignore", NotAppKeyWarning)
            request["claims_identity"] = claims
        try:
            response = await self.cloud.process(request, self.bot)
        except ValidationError as exc:
            return error_response(400, "bad_activity", f"not a Bot Framework activity: {exc.error_count()} problems")
        return response if response is not None else web.Response(status=202)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(MESSAGES_PATH, self.messages)

    # -- health -------------------------------------------------------------
    async def check_bindings(self) -> None:
        """For ``/readyz``: Teams channels that cannot receive chats, each with what to do."""
        async with self.svc.db.read() as session:
            query = select(ChannelBinding).where(ChannelBinding.platform == "teams", ChannelBinding.status != "ok")
            broken = list((await session.execute(query.order_by(ChannelBinding.id))).scalars())
        if broken:
            raise BrokenChannels("; ".join(_describe(b) for b in broken))

    # -- worker side --------------------------------------------------------
    def register_outbox(self, dispatcher: Dispatcher) -> None:
        self.relay.register_outbox(dispatcher)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _describe(binding: ChannelBinding) -> str:
    config: dict[str, Any] = binding.config or {}
    where = binding.channel_name or binding.channel_id
    if config.get("team_name"):
        where = f"{config['team_name']} / {where}"
    return f"{where} (widget {binding.widget_id}): {binding.status_detail}"
