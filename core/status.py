"""Keeps every widget's status current and announces changes the moment they happen.

The availability engine says when a status can next change (a schedule edge,
an agent's session expiring); the watcher sleeps until the earliest such
instant or until agents or widgets change, recomputes, and tells its
listeners about widgets whose status differs. Each web process runs one for
the sockets it holds, so no cross-process coordination is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core import events as ev
from core.agents import agent_state
from core.availability import AgentState, WidgetSettings, WidgetStatus, widget_status
from core.clock import utcnow
from core.db import Database
from core.events import EventBus
from core.models import Agent, Widget
from core.schedule import Schedule, parse_schedule
from core.wakeups import wait_for_wake

log = logging.getLogger(__name__)

Listener = Callable[[int, str, WidgetStatus], Awaitable[None]]
MAX_SLEEP_S = 300.0  # re-read at least this often, as a safety net for missed events


class ScheduleCache:
    """Parsed schedules by widget, re-parsed only when the widget changes."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, Schedule | None]] = {}

    def get(self, widget: Widget) -> Schedule | None:
        hit = self._cache.get(widget.id)
        if hit is not None and hit[0] == widget.schedule:
            return hit[1]
        parsed = parse_schedule(widget.schedule) if widget.schedule else None
        self._cache[widget.id] = (widget.schedule, parsed)
        return parsed


def widget_settings(widget: Widget, schedule: Schedule | None) -> WidgetSettings:
    return WidgetSettings(
        id=widget.id,
        enabled=widget.enabled,
        schedule=schedule,
        session_timeout_s=widget.session_timeout_s,
        hide_when_offline=widget.hide_when_offline,
        offline_form=widget.offline_form,
        ai_enabled=widget.ai_enabled,
        ai_always=widget.ai_always,
    )


class StatusWatcher:
    def __init__(self, db: Database, bus: EventBus, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._statuses: dict[int, WidgetStatus] = {}
        self._listeners: list[Listener] = []
        self._schedules = ScheduleCache()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        bus.subscribe(ev.AGENTS_CHANGED, self._poke)
        bus.subscribe(ev.WIDGET_CHANGED, self._poke)
        bus.subscribe(ev.RESYNC, self._poke)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def _poke(self, _name: str, _data: dict[str, Any]) -> None:
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def cached(self, widget_id: int) -> WidgetStatus | None:
        return self._statuses.get(widget_id)

    async def status_of(self, widget: Widget, at: datetime | None = None) -> WidgetStatus:
        """The status now (from the cache) or at any instant (computed, for previews)."""
        if at is None:
            cached = self._statuses.get(widget.id)
            if cached is not None:
                return cached
        async with self.db.read() as session:
            agents = [agent_state(a) for a in (await session.execute(select(Agent))).scalars()]
        return widget_status(widget_settings(widget, self._schedules.get(widget)), agents, at or self.clock())

    async def refresh(self) -> datetime | None:
        """Recompute all widgets; notify changes; return the next instant to wake."""
        async with self._lock:
            now = self.clock()
            async with self.db.read() as session:
                widgets = list((await session.execute(select(Widget))).scalars())
                agents: list[AgentState] = [
                    agent_state(a) for a in (await session.execute(select(Agent))).scalars()
                ]
            changed: list[tuple[Widget | _Deleted, WidgetStatus]] = []
            next_wake: datetime | None = None
            seen: set[int] = set()
            for widget in widgets:
                seen.add(widget.id)
                try:
                    schedule = self._schedules.get(widget)
                except ValueError:
                    log.error("widget %s has an invalid schedule; treating it as always open", widget.id)
                    schedule = None
                status = widget_status(widget_settings(widget, schedule), agents, now)
                if _visible(self._statuses.get(widget.id)) != _visible(status):
                    changed.append((widget, status))
                self._statuses[widget.id] = status
                if status.next_change_at and (next_wake is None or status.next_change_at < next_wake):
                    next_wake = status.next_change_at
            for gone in set(self._statuses) - seen:
                del self._statuses[gone]
                # A deleted widget disappears from pages that still show it.
                changed.append((_Deleted(gone), WidgetStatus(False, "disabled", "hidden", None, 0)))
        for widget, status in changed:
            for listener in self._listeners:
                try:
                    await listener(widget.id, widget.key, status)
                except Exception:
                    log.exception("status listener failed")
        return next_wake

    async def run(self) -> None:
        """Wake at the next possible change or when poked, forever."""
        while True:
            self._wake.clear()
            try:
                next_wake = await self.refresh()
            except Exception:
                log.exception("status refresh failed; retrying")
                next_wake = None
            delay = MAX_SLEEP_S
            if next_wake is not None:
                delay = min(delay, max(0.0, (next_wake - self.clock()).total_seconds()) + 0.01)
            await wait_for_wake(self._wake, delay)


class _Deleted:
    """Stands in for a widget row that no longer exists when telling listeners."""

    def __init__(self, widget_id: int) -> None:
        self.id = widget_id
        self.key = ""


def _visible(status: WidgetStatus | None) -> tuple[Any, ...] | None:
    """The part of a status a visitor can see; a later next_change_at alone is no news."""
    if status is None:
        return None
    return (status.online, status.reason, status.mode, status.next_open_at)
