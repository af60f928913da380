"""The event bus port and its in-process implementation.

Events are a name and a JSON-able dict so that a Redis implementation can
carry them between processes unchanged. The database stays the truth: a
subscriber that missed an event recovers from the database (``resume_after``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]

# Event names used across the service.
MESSAGE_CREATED = "message.created"  # {conversation_id, widget_id, message}
MESSAGE_UPDATED = "message.updated"  # {conversation_id, widget_id, visitor_id, internal, frame, message}: edited at its source
MESSAGE_DELETED = "message.deleted"  # {conversation_id, widget_id, visitor_id, frame, message}: withdrawn from the visitor
CONVERSATION_UPDATED = "conversation.updated"  # {conversation_id, widget_id, conversation}
TYPING = "typing"  # {conversation_id, widget_id, from, author, active}
AGENTS_CHANGED = "agents.changed"  # {agent_id}
WIDGET_CHANGED = "widget.changed"  # {widget_id}
DESTINATIONS_CHANGED = "destinations.changed"  # {widget_id or None}: bindings, webhook endpoints or Pushover keys changed
OFFLINE_MESSAGE_CREATED = "offline_message.created"  # {widget_id, offline_message}
RESYNC = "bus.resync"  # {}: events may have been missed; catch up from the database
OUTBOX_ENQUEUED = "outbox.enqueued"  # {kinds}: wakes the dispatcher at once instead of at its next poll


class EventBus(Protocol):
    async def publish(self, name: str, data: dict[str, Any]) -> None: ...

    def subscribe(self, name: str, handler: Handler) -> None: ...


class LocalBus:
    """Delivers events to handlers in this process.

    Handlers run as tasks so a slow subscriber never delays the publisher
    (the publisher is usually answering a visitor); failures are logged.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, name: str, handler: Handler) -> None:
        self._handlers[name].append(handler)

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(name, ())):
            task = asyncio.ensure_future(self._run(handler, name, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, handler: Handler, name: str, data: dict[str, Any]) -> None:
        try:
            await handler(name, data)
        except Exception:  # a broken subscriber must not break the others
            log.exception("event handler failed for %s", name)

    async def drain(self) -> None:
        """Wait for handlers still running (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
