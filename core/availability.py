"""Agent availability and widget status: pure functions over plain data.

The status also says when it can next change on its own (schedule edge,
session expiry), so callers recompute on time instead of polling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from core.schedule import Schedule, is_open, next_transition

__all__ = [
    "AgentState",
    "WidgetSettings",
    "WidgetStatus",
    "agent_available",
    "agent_expires_at",
    "agent_serves",
    "earliest",
    "widget_status",
]


@dataclass(frozen=True)
class AgentState:
    id: int
    on_duty: bool
    stay_available: bool
    last_seen_at: datetime | None
    widget_ids: frozenset[int] | None = None  # None = serves every widget


@dataclass(frozen=True)
class WidgetSettings:
    id: int
    enabled: bool
    schedule: Schedule | None
    session_timeout_s: int = 900
    hide_when_offline: bool = False
    offline_form: bool = True
    ai_enabled: bool = False
    ai_always: bool = False


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat()


@dataclass(frozen=True)
class WidgetStatus:
    online: bool
    reason: str | None  # disabled | outside_schedule | no_agent_available
    mode: str  # live | ai | form | hidden
    next_change_at: datetime | None
    agents_available: int
    next_open_at: datetime | None = None

    def to_json(self) -> dict:
        """API/widget form; instants as ISO-8601 in UTC with offset."""
        return {
            "online": self.online,
            "reason": self.reason,
            "mode": self.mode,
            "next_change_at": _iso(self.next_change_at),
            "agents_available": self.agents_available,
            "next_open_at": _iso(self.next_open_at),
        }


def earliest(*instants: datetime | None) -> datetime | None:
    """Earliest of the given instants, ignoring None (None if all are None)."""
    present = [i for i in instants if i is not None]
    return min(present) if present else None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")


def agent_available(agent: AgentState, now: datetime, session_timeout_s: int) -> bool:
    """On duty and either pinned available or seen less than the timeout ago."""
    if not agent.on_duty:
        return False
    if agent.stay_available:
        return True
    if agent.last_seen_at is None:
        return False
    return now < agent.last_seen_at + timedelta(seconds=session_timeout_s)


def agent_expires_at(
    agent: AgentState, now: datetime, session_timeout_s: int
) -> datetime | None:
    """When the session lapses with no new action; None if unavailable or pinned."""
    if agent.stay_available or not agent_available(agent, now, session_timeout_s):
        return None
    assert agent.last_seen_at is not None
    return agent.last_seen_at + timedelta(seconds=session_timeout_s)


def agent_serves(agent: AgentState, widget_id: int) -> bool:
    """Agents without a widget list answer every widget."""
    return agent.widget_ids is None or widget_id in agent.widget_ids


def _offline_mode(w: WidgetSettings) -> str:
    # The assistant beats hiding: it can take details and hand off later.
    if w.ai_enabled:
        return "ai"
    return "hidden" if w.hide_when_offline else "form"


def widget_status(
    widget: WidgetSettings, agents: Iterable[AgentState], now: datetime
) -> WidgetStatus:
    """Online/offline with reason, display mode and the next instant to recompute.

    A disabled widget is not evaluated further (agents_available=0,
    next_change_at=None): nothing about it changes until someone enables it.
    """
    _require_aware(now)
    if not widget.enabled:
        return WidgetStatus(False, "disabled", "hidden", None, 0, None)

    timeout = widget.session_timeout_s
    serving = [
        a
        for a in agents
        if agent_serves(a, widget.id) and agent_available(a, now, timeout)
    ]
    expiry = earliest(*(agent_expires_at(a, now, timeout) for a in serving))

    sched = widget.schedule
    schedule_edge = next_transition(sched, now) if sched is not None else None
    next_change = earliest(schedule_edge, expiry)

    if sched is not None and not is_open(sched, now):
        # While closed, the next schedule transition is the next opening.
        return WidgetStatus(
            False, "outside_schedule", _offline_mode(widget), next_change,
            len(serving), schedule_edge,
        )
    if not serving:
        return WidgetStatus(
            False, "no_agent_available", _offline_mode(widget), next_change, 0, None
        )
    mode = "ai" if widget.ai_enabled and widget.ai_always else "live"
    return WidgetStatus(True, None, mode, next_change, len(serving), None)
