""""All agents went offline during business hours": one alert per occurrence, in the
widget's bound channels (outbox kind ``{platform}.agents_away``, delivered by the
platform adapter).

The worker compares each widget's status with the last one it recorded.
The alert is planned in the same transaction as a compare-and-set of that
record (``online`` true -> false), so two workers watching the same widget
alert once. Only widgets with business hours alert: without a schedule,
agents leaving in the evening is the normal end of the day, not an incident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import agent_state
from core.availability import WidgetStatus, widget_status
from core.bindings import bindings_for_widget
from core.clock import iso, utcnow
from core.db import Database
from core.models import Agent, Widget, WidgetPresence
from core.outbox import enqueue, insert_new
from core.status import ScheduleCache, widget_settings
from core.write_each import write_each

log = logging.getLogger(__name__)


def alert_kind(platform: str) -> str:
    return f"{platform}.agents_away"


def agents_left_during_hours(was_online: bool, status: WidgetStatus, has_schedule: bool) -> bool:
    """The widget was online and is now offline only because no agent is available,
    while its schedule says it should be open."""
    return was_online and not status.online and status.reason == "no_agent_available" and has_schedule


async def plan_away_alert(session: AsyncSession, widget: Widget, at: datetime) -> int:
    planned = 0
    for binding in await bindings_for_widget(session, widget.id):
        enqueue(
            session,
            alert_kind(binding.platform),
            {
                "binding_id": binding.id,
                "widget_id": widget.id,
                "widget_name": widget.name,
                "at": iso(at),
                "text": f"All agents went offline on {widget.name} during business hours: "
                "visitors now see the offline form.",
            },
            ref=("widget", widget.id),
        )
        planned += 1
    return planned


class AwayAlertRunner:
    """Run every minute by the worker; plans an alert when a widget's last agent leaves."""

    def __init__(
        self, db: Database, *, clock: Callable[[], datetime] = utcnow, on_enqueued: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_enqueued = on_enqueued
        self._schedules = ScheduleCache()

    async def run_once(self) -> int:
        """Record status changes; return how many alert rows were planned."""
        now = self.clock()
        async with self.db.read() as session:
            # In id order: two workers lock widgets' rows in one order, so neither waits for the other's.
            widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
            agents = [agent_state(a) for a in (await session.execute(select(Agent))).scalars()]
            known = {p.widget_id: p.online for p in (await session.execute(select(WidgetPresence))).scalars()}
        changed: list[tuple[Widget, bool | None, WidgetStatus, bool]] = []
        for widget in widgets:
            try:
                schedule = self._schedules.get(widget)
            except ValueError:
                continue  # the status watcher logs invalid schedules
            status = widget_status(widget_settings(widget, schedule), agents, now)
            was = known.get(widget.id)
            if was is not None and was == status.online:
                continue
            changed.append((widget, was, status, schedule is not None))

        def failed(change: tuple[Widget, bool | None, WidgetStatus, bool], _exc: Exception) -> None:
            log.exception("recording the status of widget %s failed; the next run tries again", change[0].id)

        recorded = await write_each(self.db, changed, lambda session, c: self._record(session, *c, now), failed)
        planned = sum(n for _, n in recorded)
        if planned and self.on_enqueued is not None:
            self.on_enqueued()
        return planned

    async def _record(
        self, session: AsyncSession, widget: Widget, was: bool | None, status: WidgetStatus, has_schedule: bool, now: datetime
    ) -> int:
        if was is None:  # first sight of this widget: remember, nothing to compare with
            row = {"widget_id": widget.id, "online": status.online, "changed_at": now}
            await insert_new(session, WidgetPresence.__table__, [row])  # skipped if another worker saw it first
            return 0
        result = await session.execute(
            update(WidgetPresence)
            .where(WidgetPresence.widget_id == widget.id, WidgetPresence.online == was)
            .values(online=status.online, changed_at=now)
        )
        if result.rowcount != 1:
            return 0  # another worker recorded this change first
        if agents_left_during_hours(was, status, has_schedule):
            return await plan_away_alert(session, widget, now)
        return 0
