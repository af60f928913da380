"""The Slack adapter as the service runs it: Bolt app, transport, outbox handlers, presence.

Transport: ``POST /slack/events`` carries events, commands and
interactivity (Bolt verifies the signature), or Socket Mode when an app
token is configured. ``GET /slack/install`` and ``/slack/oauth_redirect``
run the multi-workspace install. Bolt is mounted by hand with
``to_bolt_request``/``to_aiohttp_response``: mounting its own web app as a
sub-app answers 404, because Bolt compares full paths.

Bolt acknowledges each request before the listeners finish
(``process_before_response`` stays off), so Slack gets its answer within
3 s whatever the database or the Web API are doing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from sqlalchemy import select

from core.dispatch import Dispatcher
from core.models import ChannelBinding
from core.services import Services

from adapters.slack import blocks
from adapters.slack.actions import Actions
from adapters.slack.clients import SlackClients
from adapters.slack.commands import Commands
from adapters.slack.config import SlackConfig
from adapters.slack.directory import Directory
from adapters.slack.inbound import Inbound
from adapters.slack.manifest import BOT_SCOPES, EVENTS_PATH, REDIRECT_PATH
from adapters.slack.pacing import ChannelPacer
from adapters.slack.presence import PresencePoller
from adapters.slack.relay import SlackRelay
from adapters.slack.store import SqlInstallationStore, SqlOAuthStateStore

log = logging.getLogger(__name__)
INSTALL_PATH = "/slack/install"


class BrokenChannels(Exception):
    """Some bound Slack channels cannot receive chats; the message says which and what to do."""


class SlackAdapter:
    """Everything Slack for one process; pieces are built lazily where they need the loop."""

    def __init__(self, svc: Services, config: SlackConfig) -> None:
        self.svc = svc
        self.config = config
        self.installations = SqlInstallationStore(svc.db) if config.multi_workspace else None
        self.states = SqlOAuthStateStore(svc.db) if config.multi_workspace else None
        self.clients = SlackClients(config, self.installations)
        self.directory = Directory(svc.db, self.clients, config.profile_ttl_s)
        per_second = 1.0 / config.post_interval_s if config.post_interval_s > 0 else 0.0
        self.relay = SlackRelay(
            svc.db, self.clients, ChannelPacer(per_second, config.post_burst), public_url=config.public_url or svc.public_url
        )
        self.presence = PresencePoller(
            svc, self.clients, interval_s=config.presence_interval_s, calls_per_minute=config.presence_calls_per_minute
        )
        self.inbound = Inbound(svc, self.directory)
        self.commands = Commands(svc, self.directory)
        self.actions = Actions(svc, self.directory, self.installations)
        self._bolt: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None

    # -- Bolt ---------------------------------------------------------------
    @property
    def bolt(self) -> AsyncApp:
        if self._bolt is None:
            self._bolt = self._build_bolt()
        return self._bolt

    def _build_bolt(self) -> AsyncApp:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "name": "deskbell",
            "logger": logging.getLogger("deskbell.slack.bolt"),
            # Passed explicitly so Bolt never falls back to SLACK_* variables behind our validation.
            "signing_secret": cfg.signing_secret or "",
            "client": self.clients.client(cfg.bot_token),
        }
        if cfg.multi_workspace:
            base = (cfg.public_url or "").rstrip("/")
            kwargs["installation_store_bot_only"] = True
            kwargs["oauth_settings"] = AsyncOAuthSettings(
                client_id=cfg.client_id,
                client_secret=cfg.client_secret,
                scopes=BOT_SCOPES,
                redirect_uri=base + REDIRECT_PATH if base else None,
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=self.installations,
                installation_store_bot_only=True,
                state_store=self.states,
            )
        app = AsyncApp(**kwargs)
        app.event("message")(self.inbound.on_message)
        app.event("app_home_opened")(self.actions.home_opened)
        app.event("app_uninstalled")(self.actions.uninstalled)
        app.event("tokens_revoked")(self.actions.uninstalled)
        for name, handler in self.commands.table().items():
            app.command(name)(handler)
        app.action(blocks.CLAIM)(self.actions.claim)
        app.action(blocks.CLOSE)(self.actions.close)
        app.action(blocks.TAKE_OVER)(self.actions.take_over)
        app.action(blocks.OFFLINE_HANDLED)(self.actions.offline_handled)
        app.action(blocks.HOME_DUTY)(self.actions.home_duty)
        app.action(blocks.HOME_STAY)(self.actions.home_stay)
        return app

    # -- HTTP routes ----------------------------------------------------------
    async def events(self, request: web.Request) -> web.Response:
        if not self.config.signing_secret:
            # Without a secret nothing can be verified; Socket Mode carries the events instead.
            return web.json_response({"error": "HTTP events are off: SLACK_SIGNING_SECRET is not set"}, status=404)
        return await to_aiohttp_response(await self.bolt.async_dispatch(await to_bolt_request(request)))

    async def install(self, request: web.Request) -> web.Response:
        flow = self.bolt.oauth_flow
        if flow is None:
            raise web.HTTPNotFound(text="multi-workspace install is off: set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def oauth_redirect(self, request: web.Request) -> web.Response:
        flow = self.bolt.oauth_flow
        if flow is None:
            raise web.HTTPNotFound(text="multi-workspace install is off")
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(EVENTS_PATH, self.events)
        app.router.add_get(INSTALL_PATH, self.install)
        app.router.add_get(REDIRECT_PATH, self.oauth_redirect)
        app.cleanup_ctx.append(self._web_lifetime)

    async def _web_lifetime(self, _app: web.Application) -> AsyncIterator[None]:
        """Socket Mode connects with the web process and disconnects on shutdown."""
        if self.config.socket_mode:
            self._socket = AsyncSocketModeHandler(self.bolt, self.config.app_token)
            await self._socket.connect_async()
            log.info("Slack Socket Mode connected")
        yield
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None

    async def check_bindings(self) -> None:
        """For ``/readyz``: Slack channels that cannot receive chats, each with what to do."""
        async with self.svc.db.read() as session:
            query = select(ChannelBinding).where(ChannelBinding.platform == "slack", ChannelBinding.status != "ok")
            broken = list((await session.execute(query.order_by(ChannelBinding.id))).scalars())
        if broken:
            raise BrokenChannels(
                "; ".join(f"#{b.channel_name or b.channel_id} (widget {b.widget_id}): {b.status_detail}" for b in broken)
            )

    # -- worker side ----------------------------------------------------------
    def register_outbox(self, dispatcher: Dispatcher) -> None:
        self.relay.register_outbox(dispatcher)

    async def close(self) -> None:
        await self.clients.close()
