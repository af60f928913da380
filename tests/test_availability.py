import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.availability import (
    AgentState,
    WidgetSettings,
    WidgetStatus,
    agent_available,
    agent_expires_at,
    agent_serves,
    earliest,
    widget_status,
)
from core.schedule import parse_schedule

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)  # Monday 10:00 EDT
TIMEOUT = 900
WEEKDAYS = parse_schedule({
    "timezone": "America/New_York",
    "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
})
MONDAY_CLOSE = datetime(2026, 6, 1, 21, 0, tzinfo=UTC)  # 17:00 EDT


def agent(id=1, on_duty=True, stay=False, seen=NOW - timedelta(minutes=5), widgets=None):
    return AgentState(id, on_duty, stay, seen, None if widgets is None else frozenset(widgets))


def widget(id=10, enabled=True, schedule=None, **kw):
    return WidgetSettings(id, enabled, schedule, **kw)


# ------------------------------------------------------------------ agents

def test_agent_seen_recently_is_available():
    assert agent_available(agent(), NOW, TIMEOUT)


def test_agent_session_expires_exactly_at_timeout():
    a = agent(seen=NOW - timedelta(seconds=TIMEOUT))
    assert not agent_available(a, NOW, TIMEOUT)
    assert agent_available(a, NOW - timedelta(microseconds=1), TIMEOUT)


def test_agent_expiry_is_last_seen_plus_timeout():
    a = agent(seen=NOW - timedelta(minutes=5))
    assert agent_expires_at(a, NOW, TIMEOUT) == NOW + timedelta(minutes=10)
    assert agent_expires_at(a, NOW, 60) is None  # already lapsed with a 1 min timeout


def test_stay_available_agent_needs_no_session_and_never_expires():
    a = agent(stay=True, seen=None)
    assert agent_available(a, NOW, TIMEOUT)
    assert agent_expires_at(a, NOW, TIMEOUT) is None
    old = agent(stay=True, seen=NOW - timedelta(days=30))
    assert agent_available(old, NOW, TIMEOUT)


def test_off_duty_agent_is_unavailable_even_when_pinned_or_active():
    assert not agent_available(agent(on_duty=False), NOW, TIMEOUT)
    assert not agent_available(agent(on_duty=False, stay=True), NOW, TIMEOUT)
    assert agent_expires_at(agent(on_duty=False), NOW, TIMEOUT) is None


def test_agent_never_seen_is_unavailable():
    assert not agent_available(agent(seen=None), NOW, TIMEOUT)
    assert agent_expires_at(agent(seen=None), NOW, TIMEOUT) is None


def test_agent_without_widget_list_serves_every_widget():
    assert agent_serves(agent(), 10) and agent_serves(agent(), 99)
    assert agent_serves(agent(widgets={10}), 10)
    assert not agent_serves(agent(widgets={11}), 10)
    assert not agent_serves(agent(widgets=set()), 10)


def test_earliest_ignores_missing_instants():
    assert earliest() is None
    assert earliest(None, None) is None
    assert earliest(None, NOW, NOW - timedelta(1)) == NOW - timedelta(1)


# ------------------------------------------------------------------ online / reasons

def test_widget_is_online_with_an_available_agent_and_no_schedule():
    st = widget_status(widget(), [agent()], NOW)
    assert st == WidgetStatus(True, None, "live", NOW + timedelta(minutes=10), 1, None)


def test_widget_goes_offline_when_last_agent_session_expires():
    a = agent(seen=NOW - timedelta(minutes=5))
    before = widget_status(widget(), [a], NOW)
    assert before.online and before.next_change_at == NOW + timedelta(minutes=10)
    after = widget_status(widget(), [a], before.next_change_at)
    assert not after.online
    assert after.reason == "no_agent_available" and after.agents_available == 0
    assert after.next_change_at is None


def test_widget_without_agents_is_offline_for_no_agent_available():
    st = widget_status(widget(), [], NOW)
    assert (st.online, st.reason, st.mode, st.next_change_at) == (False, "no_agent_available", "form", None)


def test_off_duty_agents_do_not_count():
    st = widget_status(widget(), [agent(on_duty=False, stay=True)], NOW)
    assert st.reason == "no_agent_available" and st.agents_available == 0


def test_agent_restricted_to_another_widget_does_not_count():
    assert widget_status(widget(id=10), [agent(widgets={11})], NOW).reason == "no_agent_available"
    assert widget_status(widget(id=11), [agent(widgets={11})], NOW).online


def test_stay_available_agent_keeps_widget_online_with_nothing_pending():
    st = widget_status(widget(), [agent(stay=True, seen=None)], NOW)
    assert st.online and st.next_change_at is None


def test_agents_available_counts_only_available_agents_serving_the_widget():
    agents = [
        agent(1),
        agent(2, stay=True),
        agent(3, on_duty=False),
        agent(4, seen=NOW - timedelta(hours=1)),
        agent(5, widgets={99}),
        agent(6, widgets={10, 99}, seen=NOW - timedelta(minutes=14)),
    ]
    st = widget_status(widget(id=10), agents, NOW)
    assert st.agents_available == 3
    assert st.next_change_at == NOW + timedelta(minutes=1)  # agent 6 lapses first


def test_agents_may_be_a_one_shot_iterable():
    st = widget_status(widget(), (a for a in [agent(1), agent(2)]), NOW)
    assert st.agents_available == 2


def test_session_timeout_comes_from_the_widget():
    a = agent(seen=NOW - timedelta(minutes=20))
    assert not widget_status(widget(), [a], NOW).online
    st = widget_status(widget(session_timeout_s=3600), [a], NOW)
    assert st.online and st.next_change_at == NOW + timedelta(minutes=40)


def test_disabled_widget_is_hidden_with_nothing_pending():
    w = widget(enabled=False, schedule=WEEKDAYS, ai_enabled=True, ai_always=True)
    st = widget_status(w, [agent()], NOW)
    assert st == WidgetStatus(False, "disabled", "hidden", None, 0, None)


def test_widget_is_offline_outside_schedule_even_with_agents():
    saturday = datetime(2026, 6, 6, 16, 0, tzinfo=UTC)
    st = widget_status(widget(schedule=WEEKDAYS), [agent(stay=True)], saturday)
    assert not st.online and st.reason == "outside_schedule"
    assert st.agents_available == 1
    assert st.next_open_at == datetime(2026, 6, 8, 13, 0, tzinfo=UTC)  # Mon 09:00 EDT
    assert st.next_change_at == st.next_open_at


def test_outside_schedule_takes_precedence_over_no_agent():
    sunday = datetime(2026, 6, 7, 16, 0, tzinfo=UTC)
    assert widget_status(widget(schedule=WEEKDAYS), [], sunday).reason == "outside_schedule"


def test_next_open_at_is_only_given_outside_schedule():
    assert widget_status(widget(schedule=WEEKDAYS), [], NOW).next_open_at is None
    assert widget_status(widget(schedule=WEEKDAYS), [agent()], NOW).next_open_at is None


def test_widget_is_online_inside_schedule_until_closing():
    st = widget_status(widget(schedule=WEEKDAYS), [agent(stay=True)], NOW)
    assert st.online and st.next_change_at == MONDAY_CLOSE
    closed = widget_status(widget(schedule=WEEKDAYS), [agent(stay=True)], MONDAY_CLOSE)
    assert closed.reason == "outside_schedule"


def test_schedule_that_never_opens_reports_no_next_opening():
    never = parse_schedule({"timezone": "UTC"})
    st = widget_status(widget(schedule=never), [agent(stay=True)], NOW)
    assert st.reason == "outside_schedule" and st.next_open_at is None and st.next_change_at is None


# ------------------------------------------------------------------ next_change_at

def test_next_change_is_session_expiry_when_it_comes_before_closing():
    st = widget_status(widget(schedule=WEEKDAYS), [agent()], NOW)
    assert st.next_change_at == NOW + timedelta(minutes=10)


def test_next_change_is_closing_when_it_comes_before_session_expiry():
    near_close = MONDAY_CLOSE - timedelta(minutes=3)
    a = agent(seen=near_close - timedelta(minutes=1))
    st = widget_status(widget(schedule=WEEKDAYS), [a], near_close)
    assert st.online and st.next_change_at == MONDAY_CLOSE


def test_next_change_while_closed_includes_agent_expiry():
    evening = MONDAY_CLOSE + timedelta(hours=1)
    a = agent(seen=evening - timedelta(minutes=1))
    st = widget_status(widget(schedule=WEEKDAYS), [a], evening)
    assert st.reason == "outside_schedule"
    assert st.next_change_at == evening + timedelta(minutes=14)
    assert st.next_open_at == datetime(2026, 6, 2, 13, 0, tzinfo=UTC)


def test_next_change_without_agents_is_the_schedule_edge():
    st = widget_status(widget(schedule=WEEKDAYS), [], NOW)
    assert st.reason == "no_agent_available" and st.next_change_at == MONDAY_CLOSE


def test_next_change_ignores_agents_of_other_widgets_and_lapsed_sessions():
    agents = [agent(1, widgets={99}, seen=NOW - timedelta(minutes=14)), agent(2, stay=True),
              agent(3, seen=NOW - timedelta(hours=2))]
    assert widget_status(widget(), agents, NOW).next_change_at is None


def test_next_change_is_always_in_the_future():
    st = widget_status(widget(schedule=WEEKDAYS), [agent()], datetime(2026, 6, 1, 13, 0, tzinfo=UTC))
    assert st.next_change_at > datetime(2026, 6, 1, 13, 0, tzinfo=UTC)


def test_status_accepts_any_aware_now_and_rejects_naive():
    local_now = NOW.astimezone(NY)
    assert widget_status(widget(schedule=WEEKDAYS), [agent()], local_now).online
    with pytest.raises(ValueError, match="timezone-aware"):
        widget_status(widget(), [], datetime(2026, 6, 1, 12))


# ------------------------------------------------------------------ modes

FLAGS = list(itertools.product([False, True], repeat=4))


def _flags(ai_enabled, ai_always, hide, form):
    return dict(ai_enabled=ai_enabled, ai_always=ai_always, hide_when_offline=hide, offline_form=form)


@pytest.mark.parametrize("ai_enabled, ai_always, hide, form", FLAGS)
def test_online_mode_is_live_unless_ai_always(ai_enabled, ai_always, hide, form):
    st = widget_status(widget(**_flags(ai_enabled, ai_always, hide, form)), [agent()], NOW)
    assert st.online
    assert st.mode == ("ai" if ai_enabled and ai_always else "live")


@pytest.mark.parametrize("ai_enabled, ai_always, hide, form", FLAGS)
def test_offline_mode_prefers_ai_then_hidden_then_form(ai_enabled, ai_always, hide, form):
    expected = "ai" if ai_enabled else "hidden" if hide else "form"
    w = widget(schedule=WEEKDAYS, **_flags(ai_enabled, ai_always, hide, form))
    assert widget_status(w, [], NOW).mode == expected  # no_agent_available
    saturday = datetime(2026, 6, 6, 16, 0, tzinfo=UTC)
    assert widget_status(w, [agent(stay=True)], saturday).mode == expected  # outside_schedule


@pytest.mark.parametrize("ai_enabled, ai_always, hide, form", FLAGS)
def test_disabled_widget_is_hidden_whatever_the_flags(ai_enabled, ai_always, hide, form):
    w = widget(enabled=False, **_flags(ai_enabled, ai_always, hide, form))
    assert widget_status(w, [agent(stay=True)], NOW).mode == "hidden"


# ------------------------------------------------------------------ JSON

def test_status_json_uses_utc_iso_strings():
    st = WidgetStatus(False, "outside_schedule", "form",
                      datetime(2026, 6, 8, 9, 0, tzinfo=NY), 2,
                      datetime(2026, 6, 8, 9, 0, tzinfo=NY))
    assert st.to_json() == {
        "online": False,
        "reason": "outside_schedule",
        "mode": "form",
        "next_change_at": "2026-06-08T13:00:00+00:00",
        "agents_available": 2,
        "next_open_at": "2026-06-08T13:00:00+00:00",
    }


def test_status_json_keeps_missing_instants_as_null():
    assert widget_status(widget(), [agent(stay=True)], NOW).to_json() == {
        "online": True, "reason": None, "mode": "live",
        "next_change_at": None, "agents_available": 1, "next_open_at": None,
    }
