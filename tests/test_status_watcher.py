"""The status watcher wakes exactly when a status can change and pushes it to open widgets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from core.agents import create_agent
from core.services import Services
from core.status import StatusWatcher
from core.widgets import create_widget
from tests.widget_client import Visitor

NY_9_TO_5 = {"timezone": "America/New_York", "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


async def test_widget_goes_offline_when_last_agent_session_expires(client, services: Services):
    """Real time: the agent was last seen 59.6 s ago with a 60 s timeout; nobody acts."""
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "session_timeout_s": 60})
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True})
        agent.last_seen_at = datetime.now(timezone.utc) - timedelta(seconds=59.6)
    services.watcher.poke()
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["online"] is True
    status = await visitor.next("status", timeout=3)
    assert status["online"] is False and status["reason"] == "no_agent_available"


async def test_stay_available_keeps_the_widget_online_without_activity(client, services: Services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "session_timeout_s": 60})
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    services.watcher.poke()
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["online"] is True
    assert visitor.welcome["status"]["next_change_at"] is None


async def test_schedule_edges_flip_the_status_at_the_right_instant(services: Services):
    now = [datetime(2026, 11, 25, 21, 59, 59, tzinfo=timezone.utc)]  # Wed 16:59:59 in New York
    watcher = StatusWatcher(services.db, services.bus, clock=lambda: now[0])
    pushed: list[tuple[int, str, object]] = []

    async def listener(widget_id, key, status):  # type: ignore[no-untyped-def]
        pushed.append((widget_id, key, status))

    watcher.add_listener(listener)
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Office", "schedule": NY_9_TO_5})
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    wake = await watcher.refresh()
    assert wake == datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)
    assert pushed[-1][2].online is True  # type: ignore[attr-defined]
    pushed.clear()
    now[0] = wake
    next_wake = await watcher.refresh()
    [(widget_id, key, status)] = pushed
    assert (widget_id, key) == (widget.id, widget.key)
    assert status.online is False and status.reason == "outside_schedule"  # type: ignore[attr-defined]
    assert status.next_open_at == datetime(2026, 11, 26, 14, 0, tzinfo=timezone.utc)  # type: ignore[attr-defined]
    assert next_wake == status.next_open_at  # type: ignore[attr-defined]
    pushed.clear()
    now[0] = now[0] + timedelta(minutes=5)
    await watcher.refresh()
    assert pushed == []  # nothing visible changed, nothing pushed


async def test_status_preview_at_any_instant_ignores_the_cache(services: Services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Office", "schedule": NY_9_TO_5})
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc)
    monday = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
    assert (await services.watcher.status_of(widget, at=saturday)).reason == "outside_schedule"
    assert (await services.watcher.status_of(widget, at=monday)).online is True
