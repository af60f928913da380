"""Builds the running service from settings: one place that wires core to adapters."""

from __future__ import annotations

from adapters.redis.bus import RedisBus
from adapters.redis.ratelimit import RedisRateLimiter
from core.chat import ChatService
from core.dispatch import Dispatcher
from core.db import Database
from core.events import EventBus, LocalBus
from core.instance import ensure_secret_key
from core.ratelimit import MemoryRateLimiter, RateLimiter
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
    bus: EventBus
    rate_limiter: RateLimiter
    if settings.redis_url:
        redis_bus = RedisBus(settings.redis_url)
        await redis_bus.start()
        bus, rate_limiter = redis_bus, RedisRateLimiter(redis_bus.redis)
    else:
        bus, rate_limiter = LocalBus(), MemoryRateLimiter()
    svc = Services(
        db=db,
        bus=bus,
        chat=ChatService(db, bus),
        watcher=StatusWatcher(db, bus),
        visitor_tokens=VisitorTokens(secret),
        rate_limiter=rate_limiter,
        public_url=public_url,
        limits=limits or Limits(),
    )
    svc.health_checks["database"] = db.ping
    if settings.redis_url:
        svc.health_checks["redis"] = redis_bus.ping
        svc.closers.append(redis_bus.close)
    return svc


def build_dispatcher(svc: Services, settings: Settings) -> Dispatcher:
    """The outbox dispatcher with a handler for every configured destination."""
    dispatcher = Dispatcher(svc.db, svc.bus)
    return dispatcher
