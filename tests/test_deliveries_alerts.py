"""The channel hears once when every agent leaves during business hours."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from core.availability import WidgetStatus
from core.away_alerts import AwayAlertRunner, agents_left_during_hours
from core.bindings import bind_channel
from core.db import Database
from core.models import Agent
from tests.test_deliveries_helpers import Clock, add_agent, add_widget, outbox

ALWAYS_OPEN = {"timezone": "UTC", "weekly": {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


def test_only_losing_the_last_agent_within_hours_is_an_incident():
    away = WidgetStatus(False, "no_agent_available", "form", None, 0)
    closed = WidgetStatus(False, "outside_schedule", "form", None, 0)
    assert agents_left_during_hours(True, away, has_schedule=True) is True
    assert agents_left_during_hours(True, away, has_schedule=False) is False  # no hours: evenings are normal
    assert agents_left_during_hours(True, closed, has_schedule=True) is False  # closing time
    assert agents_left_during_hours(False, away, has_schedule=True) is False  # was already offline


async def _setup(services, schedule=ALWAYS_OPEN):  # type: ignore[no-untyped-def]
    widget = await add_widget(services, schedule=schedule)
    agent = await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    async with services.db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    return widget, agent


async def _off_duty(services, agent_id: int) -> None:  # type: ignore[no-untyped-def]
    async with services.db.write() as session:
        await session.execute(update(Agent).where(Agent.id == agent_id).values(on_duty=False))


async def test_the_channel_is_alerted_once_when_the_last_agent_leaves_during_hours(services):
    widget, agent = await _setup(services)
    runner = AwayAlertRunner(services.db, clock=Clock())
    assert await runner.run_once() == 0  # first sight: online, remembered
    await _off_duty(services, agent.id)
    assert await runner.run_once() == 1
    assert await runner.run_once() == 0
    [alert] = await outbox(services.db, "slack.agents_away")
    assert alert.payload["widget_id"] == widget.id and "All agents went offline on Shop" in alert.payload["text"]


async def test_two_workers_alert_once(services):
    _, agent = await _setup(services)
    other = Database(services.db.url)
    try:
        runners = [AwayAlertRunner(services.db, clock=Clock()), AwayAlertRunner(other, clock=Clock())]
        await asyncio.gather(*(r.run_once() for r in runners))
        await _off_duty(services, agent.id)
        await asyncio.gather(*(r.run_once() for r in runners))
    finally:
        await other.dispose()
    assert len(await outbox(services.db, "slack.agents_away")) == 1


async def test_no_alert_for_a_widget_without_business_hours(services):
    _, agent = await _setup(services, schedule=None)
    runner = AwayAlertRunner(services.db, clock=Clock())
    await runner.run_once()
    await _off_duty(services, agent.id)
    assert await runner.run_once() == 0
    assert await outbox(services.db, "slack.") == []
