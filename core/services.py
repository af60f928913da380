"""The set of running services an adapter is handed by the wiring in ``bot``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from dataclasses import dataclass, field

from core.chat import ChatService
from core.db import Database
from core.events import EventBus
from core.metrics import Registry
from core.ratelimit import RateLimiter
from core.status import StatusWatcher
from core.tokens import VisitorTokens

if TYPE_CHECKING:
    from core.assistant_service import AssistantService


@dataclass
class Limits:
    """Abuse limits; defaults suit a small team and can be tightened per deployment."""

    offline_per_ip_per_hour: int = 10
    messages_per_connection_per_minute: int = 30
    messages_per_ip_per_minute: int = 60
    connections_per_ip: int = 20
    max_frame_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024


@dataclass
class Services:
    db: Database
    bus: EventBus
    chat: ChatService
    watcher: StatusWatcher
    visitor_tokens: VisitorTokens
    rate_limiter: RateLimiter
    public_url: str
    limits: Limits = field(default_factory=Limits)
    metrics: Registry = field(default_factory=Registry)
    # name -> coroutine raising when that dependency is unhealthy (for /readyz)
    health_checks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # called in reverse order on shutdown
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # the AI assistant (core/assistant_service.py), when the wiring built one
    assistant: AssistantService | None = None

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        await self.db.dispose()
