"""Builds the running service from settings: one place that wires core to adapters."""

from __future__ import annotations

from core.chat import ChatService
from core.dispatch import Dispatcher
from core.db import Database
from core.events import LocalBus
from core.instance import ensure_secret_key
from core.ratelimit import MemoryRateLimiter
from core.services import Limits, Services
from core.status import StatusWatcher
from core.tokens import VisitorTokens

from bot.settings import Settings


async def build_services(settings: Settings, *, public_url: str, limits: Limits | None = None) -> Services:
    db = Database(settings.database_url)
    secret = settings.secret_key
    if secret is None:
        async with db.write() as session:
            secret = await ensure_secret_key(session)
    bus = LocalBus()
    return Services(
        db=db,
        bus=bus,
        chat=ChatService(db, bus),
        watcher=StatusWatcher(db, bus),
        visitor_tokens=VisitorTokens(secret),
        rate_limiter=MemoryRateLimiter(),
        public_url=public_url,
        limits=limits or Limits(),
    )


def build_dispatcher(svc: Services, settings: Settings) -> Dispatcher:
    """The outbox dispatcher with a handler for every configured destination."""
    dispatcher = Dispatcher(svc.db, svc.bus)
    return dispatcher
