"""Builds the running service from settings: one place that wires core to adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from adapters.email.handlers import EmailDeliveries
from adapters.embeddings import default_embedder
from adapters.llm.factory import build_providers
from adapters.email.smtp import SmtpTransport
from adapters.pushover.client import PushoverDeliveries
from adapters.webhooks.sender import WebhookDeliveries
from core.assistant_service import KIND as AI_REPLY
from core.assistant_service import AssistantService
from core.chat import ChatService
from core.dispatch import Dispatcher
from core.db import Database
from core.events import EventBus, LocalBus
from core.instance import ensure_secret_key
from core.metrics import Registry
from core.models import Widget
from core.ratelimit import MemoryRateLimiter, RateLimiter
from core.services import Limits, Services
from core.status import StatusWatcher
from core.tokens import VisitorTokens

from bot.settings import Settings

if TYPE_CHECKING:  # platform SDKs load only when their platform is configured
    from adapters.slack.adapter import SlackAdapter
    from adapters.slack.config import SlackConfig
    from adapters.teams.adapter import TeamsAdapter


async def build_services(settings: Settings, *, public_url: str, limits: Limits | None = None) -> Services:
    db = Database(settings.database_url)
    secret = settings.secret_key
    if secret is None:
        async with db.write() as session:
            secret = await ensure_secret_key(session)
    bus: EventBus
    rate_limiter: RateLimiter
    if settings.redis_url:
        from adapters.redis.bus import RedisBus
        from adapters.redis.ratelimit import RedisRateLimiter

        # The prefix lets several deployments (or test runs) share one Redis.
        redis_bus = RedisBus(settings.redis_url, channel=f"{settings.redis_prefix}:events")
        await redis_bus.start()
        redis_limiter = RedisRateLimiter(redis_bus.redis, prefix=f"{settings.redis_prefix}:rl:")
        bus, rate_limiter = redis_bus, redis_limiter
    else:
        bus, rate_limiter = LocalBus(), MemoryRateLimiter()
    metrics = Registry()
    svc = Services(
        db=db,
        bus=bus,
        chat=ChatService(db, bus, metrics),
        watcher=StatusWatcher(db, bus),
        visitor_tokens=VisitorTokens(secret),
        rate_limiter=rate_limiter,
        public_url=public_url,
        limits=limits or Limits(),
        metrics=metrics,
    )
    svc.health_checks["database"] = db.ping
    if settings.redis_url:
        svc.health_checks["redis"] = redis_bus.ping
        svc.closers += [redis_bus.close, redis_limiter.close]  # run in reverse: the limiter first
    attach_assistant(svc, settings)
    return svc


def attach_assistant(svc: Services, settings: Settings) -> AssistantService:
    """The AI assistant: visitor messages on widgets in "ai" mode plan an ``ai.reply``,
    which the worker answers with the configured provider (retrieval-only without a key)."""
    providers = build_providers(settings.ai)
    svc.assistant = AssistantService(svc.db, svc.bus, svc.chat, svc.watcher, providers, timeout_s=settings.ai.timeout_s)
    svc.assistant.indexes.use_embedder(default_embedder())  # sentence embeddings, loaded on first use

    async def answers(widget: Widget) -> bool:
        return (await svc.watcher.status_of(widget)).mode == "ai"

    svc.chat.use_assistant(answers)
    svc.closers.append(providers.close)
    return svc.assistant


def build_dispatcher(
    svc: Services, settings: Settings, *, slack: SlackAdapter | None = None, teams: TeamsAdapter | None = None
) -> Dispatcher:
    """The outbox dispatcher with a handler for every configured destination."""
    dispatcher = Dispatcher(svc.db, svc.bus, metrics=svc.metrics)
    register_delivery_handlers(dispatcher, svc, settings)
    if svc.assistant is not None:
        dispatcher.register(AI_REPLY, svc.assistant.handle)
    if slack is not None:
        slack.register_outbox(dispatcher)
    if teams is not None:
        teams.register_outbox(dispatcher)  # teams.relay, teams.root_update, teams.offline_post
    return dispatcher


def build_slack(svc: Services, settings: Settings) -> SlackAdapter | None:
    """The Slack adapter when SLACK_* is configured (the settings checked it is consistent)."""
    if not settings.slack_enabled:
        return None
    from adapters.slack.adapter import SlackAdapter

    slack = SlackAdapter(svc, slack_config(settings, public_url=svc.public_url))
    svc.health_checks["slack"] = slack.check_bindings
    svc.closers.append(slack.close)
    return slack


def build_teams(svc: Services, settings: Settings) -> TeamsAdapter | None:
    """The Teams adapter when TEAMS_APP_ID is set, or TEAMS_LOCAL_DEV asks for it without auth.

    Without either, ``/api/messages`` is not mounted at all: an endpoint that
    accepts unauthenticated activities could bind a channel on any service
    URL and receive every chat.
    """
    if not settings.teams_enabled:
        return None
    from adapters.teams.adapter import TeamsAdapter
    from adapters.teams.config import DEFAULT_GRAPH_URL, TeamsConfig

    config = TeamsConfig(
        app_id=settings.teams_app_id,
        app_password=settings.teams_app_password,
        tenant_id=settings.teams_tenant_id,
        token_url=settings.teams_token_url,
        graph_url=settings.teams_graph_url or DEFAULT_GRAPH_URL,
        graph_presence=settings.teams_graph_presence,
        public_url=settings.public_url or svc.public_url or None,
    )
    teams = TeamsAdapter(svc, config)
    svc.health_checks["teams"] = teams.check_bindings
    svc.closers.append(teams.close)
    return teams


def slack_config(settings: Settings, *, public_url: str | None = None) -> SlackConfig:
    from adapters.slack.config import DEFAULT_API_URL, SlackConfig

    return SlackConfig(
        bot_token=settings.slack_bot_token,
        signing_secret=settings.slack_signing_secret,
        app_token=settings.slack_app_token,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        api_url=settings.slack_api_url or DEFAULT_API_URL,
        public_url=settings.public_url or public_url or None,
    )


def worker_jobs(
    *, slack: SlackAdapter | None = None, teams: TeamsAdapter | None = None
) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    """Long-running worker jobs besides the outbox, each run until its stop event.

    Slack presence polling lives here: one poller per deployment, not one per web process.
    """
    jobs: list[Callable[[asyncio.Event], Awaitable[None]]] = []
    if slack is not None:
        jobs.append(slack.presence.run)
    if teams is not None and teams.presence is not None:  # TEAMS_GRAPH_PRESENCE=on
        jobs.append(teams.presence.run)
    return jobs


def register_delivery_handlers(dispatcher: Dispatcher, svc: Services, settings: Settings) -> None:
    """Email when SMTP_URL is set, Pushover when PUSHOVER_TOKEN is, webhooks always.

    Rows of a kind with no handler wait (they are never lost): configure the
    destination and restart the worker, and they go out.
    """
    WebhookDeliveries(svc.db).register(dispatcher)
    if settings.smtp is not None and settings.mail_from:
        transport = SmtpTransport(settings.smtp)
        EmailDeliveries(svc.db, transport, mail_from=settings.mail_from, base_url=svc.public_url).register(dispatcher)
    if settings.pushover_token:
        PushoverDeliveries(
            svc.db, token=settings.pushover_token, base_url=svc.public_url, api_url=settings.pushover_api_url
        ).register(dispatcher)
