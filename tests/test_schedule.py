import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.schedule import (
    DateException,
    Schedule,
    ScheduleError,
    TimeRange,
    is_open,
    next_opening,
    next_transition,
    open_intervals,
    parse_schedule,
    schedule_to_json,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE = [["09:00", "17:00"]]
WEEKDAYS = {d: NINE_TO_FIVE for d in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY = {d: NINE_TO_FIVE for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def sched(weekly=None, exceptions=None, tz="America/New_York") -> Schedule:
    data: dict = {"timezone": tz, "weekly": weekly or {}}
    if exceptions is not None:
        data["exceptions"] = exceptions
    return parse_schedule(data)


def day_intervals(s: Schedule, start: datetime, days: int = 1):
    return open_intervals(s, start, start + timedelta(days=days))


def hours_open(s: Schedule, start: datetime, days: int = 1) -> float:
    total = sum((b - a for a, b in day_intervals(s, start, days)), timedelta())
    return total / timedelta(hours=1)


# ------------------------------------------------------------------ parsing

EXAMPLE = {
    "timezone": "America/New_York",
    "weekly": {"mon": [["09:00", "17:00"]], "sat": []},
    "exceptions": [
        {"date": "2026-12-25", "closed": True},
        {"date": "2026-12-24", "hours": [["09:00", "12:00"]]},
    ],
}


def test_parse_builds_weekly_ranges_and_exceptions():
    s = parse_schedule(EXAMPLE)
    assert s.timezone == "America/New_York"
    assert s.weekly[0] == (TimeRange(540, 1020),)
    assert all(r == () for r in s.weekly[1:])
    assert s.exceptions == (
        DateException(date(2026, 12, 25), None),
        DateException(date(2026, 12, 24), (TimeRange(540, 720),)),
    )


def test_round_trip_through_json_is_lossless():
    s = parse_schedule(EXAMPLE)
    out = schedule_to_json(s)
    assert parse_schedule(json.loads(json.dumps(out))) == s
    assert schedule_to_json(parse_schedule(out)) == out


def test_json_form_lists_every_day_and_keeps_exception_order():
    out = schedule_to_json(parse_schedule(EXAMPLE))
    assert out == {
        "timezone": "America/New_York",
        "weekly": {
            "mon": [["09:00", "17:00"]],
            "tue": [], "wed": [], "thu": [], "fri": [], "sat": [], "sun": [],
        },
        "exceptions": [
            {"date": "2026-12-25", "closed": True},
            {"date": "2026-12-24", "hours": [["09:00", "12:00"]]},
        ],
    }


def test_round_trip_keeps_overnight_24_00_and_several_ranges():
    data = {
        "timezone": "Europe/Berlin",
        "weekly": {
            "fri": [["09:00", "12:00"], ["13:00", "17:00"], ["22:00", "02:00"]],
            "sun": [["00:00", "24:00"]],
        },
        "exceptions": [{"date": "2026-05-01", "hours": []}],
    }
    out = schedule_to_json(parse_schedule(data))
    assert out["weekly"]["fri"] == data["weekly"]["fri"]
    assert out["weekly"]["sun"] == [["00:00", "24:00"]]
    assert out["exceptions"] == [{"date": "2026-05-01", "hours": []}]
    assert parse_schedule(out) == parse_schedule(data)


def test_missing_weekly_and_exceptions_mean_always_closed():
    s = parse_schedule({"timezone": "UTC"})
    assert s.weekly == ((),) * 7 and s.exceptions == ()
    assert not is_open(s, utc(2026, 1, 5, 12))


def test_schedules_are_hashable_values():
    assert hash(parse_schedule(EXAMPLE)) == hash(parse_schedule(EXAMPLE))
    with pytest.raises(AttributeError):
        parse_schedule(EXAMPLE).timezone = "UTC"  # type: ignore[misc]


def test_schedule_error_is_a_value_error():
    assert issubclass(ScheduleError, ValueError)


def _tz(data: dict) -> dict:
    return {"timezone": "America/New_York", **data}


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "schedule: expected an object"),
        (_tz({"holidays": []}), "holidays: unknown field (expected one of timezone, weekly, exceptions)"),
        ({"weekly": {}}, 'timezone: required, an IANA time zone name such as "Europe/Berlin"'),
        ({"timezone": 5}, 'timezone: required, an IANA time zone name such as "Europe/Berlin"'),
        ({"timezone": "Mars/Base"}, 'timezone: "Mars/Base" is not an IANA time zone'),
        ({"timezone": "../../etc/passwd"}, 'timezone: "../../etc/passwd" is not an IANA time zone'),
        (_tz({"weekly": []}), "weekly: expected an object with keys mon..sun"),
        (_tz({"weekly": {"monday": []}}), "weekly.monday: unknown day (use mon, tue, wed, thu, fri, sat, sun)"),
        (_tz({"weekly": {"mon": "09:00-17:00"}}), 'weekly.mon: expected a list of ["HH:MM", "HH:MM"] ranges'),
        (_tz({"weekly": {"mon": [["09:00"]]}}), 'weekly.mon[0]: expected ["HH:MM", "HH:MM"]'),
        (_tz({"weekly": {"mon": ["09:00", "17:00"]}}), 'weekly.mon[0]: expected ["HH:MM", "HH:MM"]'),
        (_tz({"weekly": {"mon": [["09:00", "25:00"]]}}), 'weekly.mon[0]: "25:00" is not a time (HH:MM)'),
        (_tz({"weekly": {"tue": [["08:00", "12:00"], ["9:00", "17:00"]]}}), 'weekly.tue[1]: "9:00" is not a time (HH:MM)'),
        (_tz({"weekly": {"wed": [["09:60", "17:00"]]}}), 'weekly.wed[0]: "09:60" is not a time (HH:MM)'),
        (_tz({"weekly": {"thu": [[900, "17:00"]]}}), "weekly.thu[0]: 900 is not a time (HH:MM)"),
        (_tz({"weekly": {"fri": [["24:00", "02:00"]]}}), 'weekly.fri[0]: "24:00" is only allowed as an end time'),
        (_tz({"weekly": {"sat": [["09:00", "09:00"]]}}),
         'weekly.sat[0]: start and end are both "09:00" (ambiguous); use ["00:00", "24:00"] for a full day'),
        (_tz({"exceptions": {}}), "exceptions: expected a list"),
        (_tz({"exceptions": ["2026-12-25"]}), "exceptions[0]: expected an object"),
        (_tz({"exceptions": [{"closed": True}]}), "exceptions[0].date: required (YYYY-MM-DD)"),
        (_tz({"exceptions": [{"date": "2026-12-25", "closed": True}, {"date": "2026-02-30", "closed": True}]}),
         'exceptions[1].date: "2026-02-30" is not a date (YYYY-MM-DD)'),
        (_tz({"exceptions": [{"date": "20261225", "closed": True}]}),
         'exceptions[0].date: "20261225" is not a date (YYYY-MM-DD)'),
        (_tz({"exceptions": [{"date": 20261225, "closed": True}]}),
         "exceptions[0].date: 20261225 is not a date (YYYY-MM-DD)"),
        (_tz({"exceptions": [{"date": "2026-12-25", "closed": True, "name": "Xmas"}]}),
         "exceptions[0].name: unknown field (expected one of date, closed, hours)"),
        (_tz({"exceptions": [{"date": "2026-12-25"}]}), 'exceptions[0]: needs "closed": true or "hours"'),
        (_tz({"exceptions": [{"date": "2026-12-25", "closed": True, "hours": []}]}),
         'exceptions[0]: give either "closed": true or "hours", not both'),
        (_tz({"exceptions": [{"date": "2026-12-25", "closed": False}]}),
         'exceptions[0].closed: must be true (to open on a date, give "hours")'),
        (_tz({"exceptions": [{"date": "2026-12-25", "closed": 1}]}),
         'exceptions[0].closed: must be true (to open on a date, give "hours")'),
        (_tz({"exceptions": [{"date": "2026-12-24", "hours": [["09:00", "12:00"], ["13:00", "x"]]}]}),
         'exceptions[0].hours[1]: "x" is not a time (HH:MM)'),
        (_tz({"exceptions": [{"date": "2026-12-24", "hours": "09:00-12:00"}]}),
         'exceptions[0].hours: expected a list of ["HH:MM", "HH:MM"] ranges'),
        (_tz({"exceptions": [
            {"date": "2026-12-25", "closed": True},
            {"date": "2026-12-31", "closed": True},
            {"date": "2026-12-25", "hours": [["10:00", "12:00"]]},
        ]}), "exceptions[2].date: 2026-12-25 is already listed at exceptions[0]"),
    ],
)
def test_invalid_schedule_is_rejected_with_the_field_path(data, message):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(data)
    assert str(err.value) == message


# ------------------------------------------------------------------ weekly hours

def test_weekday_hours_are_open_inside_and_closed_outside():
    s = sched(WEEKDAYS)
    assert is_open(s, ny(2026, 6, 1, 9, 0))  # Monday, opening minute
    assert is_open(s, ny(2026, 6, 1, 16, 59))
    assert not is_open(s, ny(2026, 6, 1, 17, 0))  # end is exclusive
    assert not is_open(s, ny(2026, 6, 1, 8, 59))
    assert not is_open(s, ny(2026, 6, 6, 12, 0))  # Saturday: missing day is closed


def test_is_open_accepts_any_aware_timezone_for_the_instant():
    s = sched(WEEKDAYS)
    assert is_open(s, utc(2026, 6, 1, 13, 0))  # 09:00 EDT
    assert is_open(s, datetime(2026, 6, 1, 15, 0, tzinfo=BERLIN))  # 09:00 EDT
    assert not is_open(s, utc(2026, 6, 1, 12, 59))


def test_naive_datetimes_are_rejected():
    s = sched(WEEKDAYS)
    naive = datetime(2026, 6, 1, 12, 0)
    for call in (
        lambda: is_open(s, naive),
        lambda: next_transition(s, naive),
        lambda: next_opening(s, naive),
        lambda: open_intervals(s, naive, utc(2026, 6, 2)),
        lambda: open_intervals(s, utc(2026, 6, 1), naive),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()


def test_several_ranges_a_day_leave_a_lunch_break():
    s = sched({"mon": [["09:00", "12:00"], ["13:00", "17:00"]]})
    assert is_open(s, ny(2026, 6, 1, 11, 59))
    assert not is_open(s, ny(2026, 6, 1, 12, 30))
    assert next_transition(s, ny(2026, 6, 1, 10, 0)) == utc(2026, 6, 1, 16, 0)
    assert next_transition(s, ny(2026, 6, 1, 12, 0)) == utc(2026, 6, 1, 17, 0)
    assert day_intervals(s, ny(2026, 6, 1)) == [
        (utc(2026, 6, 1, 13), utc(2026, 6, 1, 16)),
        (utc(2026, 6, 1, 17), utc(2026, 6, 1, 21)),
    ]


def test_ranges_listed_out_of_order_or_overlapping_merge():
    s = sched({"mon": [["12:00", "17:00"], ["09:00", "13:00"], ["10:00", "11:00"]]})
    assert day_intervals(s, ny(2026, 6, 1)) == [(utc(2026, 6, 1, 13), utc(2026, 6, 1, 21))]
    assert next_transition(s, ny(2026, 6, 1, 12, 30)) == utc(2026, 6, 1, 21)


def test_full_day_with_24_00_end_is_open_until_midnight():
    s = sched({"mon": [["00:00", "24:00"]]})
    assert is_open(s, ny(2026, 6, 1, 0, 0))
    assert is_open(s, ny(2026, 6, 1, 23, 59, 59))
    assert not is_open(s, ny(2026, 6, 2, 0, 0))
    assert next_transition(s, ny(2026, 6, 1, 12)) == ny(2026, 6, 2, 0, 0)


def test_24_00_end_and_next_day_00_00_start_form_one_interval():
    s = sched({"mon": [["22:00", "24:00"]], "tue": [["00:00", "08:00"]]})
    assert day_intervals(s, ny(2026, 6, 1), days=2) == [(ny(2026, 6, 1, 22), ny(2026, 6, 2, 8))]
    assert next_transition(s, ny(2026, 6, 1, 23)) == ny(2026, 6, 2, 8)
    assert next_opening(s, ny(2026, 6, 1, 23)) == ny(2026, 6, 8, 22)


# ------------------------------------------------------------------ overnight

def test_overnight_range_runs_past_midnight():
    s = sched({"fri": [["22:00", "02:00"]]})
    assert not is_open(s, ny(2026, 6, 5, 21, 59))
    assert is_open(s, ny(2026, 6, 5, 22, 0))
    assert is_open(s, ny(2026, 6, 6, 1, 59))  # Saturday morning, Friday's range
    assert not is_open(s, ny(2026, 6, 6, 2, 0))
    assert next_transition(s, ny(2026, 6, 5, 23)) == ny(2026, 6, 6, 2)


def test_overnight_end_before_start_not_only_at_midnight():
    s = sched({"mon": [["18:00", "06:30"]]})
    assert hours_open(s, ny(2026, 6, 1), days=2) == 12.5


def test_sunday_overnight_wraps_into_monday():
    s = sched({"sun": [["22:00", "02:00"]]})
    assert is_open(s, ny(2026, 6, 1, 1, 0))  # Monday 01:00, from Sunday May 31
    assert not is_open(s, ny(2026, 6, 1, 2, 0))
    assert not is_open(s, ny(2026, 6, 2, 1, 0))  # Monday's own hours: none


def test_sunday_overnight_covers_the_following_monday_morning():
    s = sched({"sun": [["22:00", "02:00"]]})
    sunday = ny(2026, 6, 7)
    assert day_intervals(s, sunday, days=2) == [(ny(2026, 6, 7, 22), ny(2026, 6, 8, 2))]
    assert is_open(s, ny(2026, 6, 8, 1, 30))
    assert next_transition(s, ny(2026, 6, 8, 1, 30)) == ny(2026, 6, 8, 2)
    assert next_opening(s, ny(2026, 6, 8, 1, 30)) == ny(2026, 6, 14, 22)


def test_overnight_tail_belongs_to_start_day_even_if_next_day_is_closed():
    s = sched({"thu": [["22:00", "02:00"]]}, [{"date": "2026-12-25", "closed": True}])
    assert is_open(s, ny(2026, 12, 25, 1, 0))  # Christmas, but Thursday's range
    assert not is_open(s, ny(2026, 12, 25, 2, 0))


def test_overnight_tail_runs_into_a_day_with_exception_hours():
    s = sched({"thu": [["22:00", "02:00"]]}, [{"date": "2026-12-25", "hours": [["10:00", "12:00"]]}])
    assert is_open(s, ny(2026, 12, 25, 1, 0))
    assert is_open(s, ny(2026, 12, 25, 11, 0))
    assert not is_open(s, ny(2026, 12, 25, 3, 0))


def test_closed_exception_cancels_the_overnight_range_starting_that_day():
    s = sched({"thu": [["22:00", "02:00"]]}, [{"date": "2026-12-24", "closed": True}])
    assert not is_open(s, ny(2026, 12, 24, 23, 0))
    assert not is_open(s, ny(2026, 12, 25, 1, 0))
    assert is_open(s, ny(2026, 12, 17, 23, 0))  # the Thursday before


def test_exception_hours_can_be_overnight():
    s = sched({}, [{"date": "2026-07-04", "hours": [["20:00", "01:00"]]}])
    assert is_open(s, ny(2026, 7, 5, 0, 30))
    assert not is_open(s, ny(2026, 7, 5, 1, 0))


# ------------------------------------------------------------------ exceptions

def test_holiday_is_closed_all_day():
    s = sched(WEEKDAYS, [{"date": "2026-12-25", "closed": True}])
    assert not is_open(s, ny(2026, 12, 25, 12))  # Friday
    assert is_open(s, ny(2026, 12, 18, 12))  # the Friday before
    assert day_intervals(s, ny(2026, 12, 25)) == []


def test_exception_hours_replace_the_weekday_hours():
    s = sched(WEEKDAYS, [{"date": "2026-12-24", "hours": [["09:00", "12:00"]]}])
    assert is_open(s, ny(2026, 12, 24, 11, 59))
    assert not is_open(s, ny(2026, 12, 24, 13))
    assert next_transition(s, ny(2026, 12, 24, 10)) == ny(2026, 12, 24, 12)


def test_exception_hours_open_an_otherwise_closed_weekend_day():
    s = sched(WEEKDAYS, [{"date": "2026-12-19", "hours": [["10:00", "14:00"]]}])
    assert is_open(s, ny(2026, 12, 19, 10))  # Saturday
    assert next_opening(s, ny(2026, 12, 18, 18)) == ny(2026, 12, 19, 10)


def test_empty_exception_hours_close_the_day():
    s = sched(WEEKDAYS, [{"date": "2026-12-25", "hours": []}])
    assert not is_open(s, ny(2026, 12, 25, 12))


# ------------------------------------------------------------------ DST, New York

# 2026-03-08 (Sun): 02:00 EST -> 03:00 EDT at 07:00 UTC.
# 2026-11-01 (Sun): 02:00 EDT -> 01:00 EST at 06:00 UTC.

def test_nine_to_five_is_eight_real_hours_on_both_sides_of_us_spring_forward():
    s = sched(EVERY_DAY)
    assert day_intervals(s, ny(2026, 3, 7)) == [(utc(2026, 3, 7, 14), utc(2026, 3, 7, 22))]
    assert day_intervals(s, ny(2026, 3, 8)) == [(utc(2026, 3, 8, 13), utc(2026, 3, 8, 21))]
    assert is_open(s, utc(2026, 3, 8, 13, 30)) and not is_open(s, utc(2026, 3, 7, 13, 30))


def test_us_spring_forward_day_is_shorter_when_the_change_is_inside_the_range():
    s = sched({"sun": [["00:00", "08:00"]]})
    assert day_intervals(s, ny(2026, 3, 8)) == [(utc(2026, 3, 8, 5), utc(2026, 3, 8, 12))]
    assert hours_open(s, ny(2026, 3, 8)) == 7
    assert hours_open(s, ny(2026, 3, 1)) == 8


def test_us_spring_forward_full_day_is_23_hours():
    s = sched({"sun": [["00:00", "24:00"]]})
    assert hours_open(s, ny(2026, 3, 8)) == 23


def test_nonexistent_start_opens_at_the_first_valid_instant():
    s = sched({"sun": [["02:30", "04:00"]]})
    assert day_intervals(s, ny(2026, 3, 8)) == [(utc(2026, 3, 8, 7), utc(2026, 3, 8, 8))]
    assert not is_open(s, utc(2026, 3, 8, 6, 59))
    assert is_open(s, utc(2026, 3, 8, 7, 0))  # 03:00 EDT
    assert next_transition(s, utc(2026, 3, 8, 5)) == utc(2026, 3, 8, 7)


def test_nonexistent_end_closes_at_the_first_valid_instant():
    s = sched({"sun": [["01:00", "02:30"]]})
    assert day_intervals(s, ny(2026, 3, 8)) == [(utc(2026, 3, 8, 6), utc(2026, 3, 8, 7))]


def test_range_wholly_inside_the_gap_is_empty_that_day_only():
    s = sched({"sun": [["02:00", "02:45"]]})
    assert day_intervals(s, ny(2026, 3, 8)) == []
    assert next_opening(s, ny(2026, 3, 7, 12)) == ny(2026, 3, 15, 2, 0)


def test_overnight_into_spring_forward_is_one_hour_shorter():
    s = sched({"sat": [["22:00", "03:00"]]})
    assert day_intervals(s, ny(2026, 3, 7), days=2) == [(utc(2026, 3, 8, 3), utc(2026, 3, 8, 7))]
    assert next_transition(s, utc(2026, 3, 8, 6, 30)) == utc(2026, 3, 8, 7)


def test_next_transition_across_us_spring_forward_weekend():
    s = sched(WEEKDAYS)
    friday_close = ny(2026, 3, 6, 17)
    assert friday_close == utc(2026, 3, 6, 22)
    assert next_transition(s, friday_close) == utc(2026, 3, 9, 13)  # Mon 09:00 EDT
    assert next_transition(s, utc(2026, 3, 9, 13)) == utc(2026, 3, 9, 21)


def test_us_fall_back_day_is_longer_when_the_change_is_inside_the_range():
    s = sched({"sun": [["00:00", "08:00"]]})
    assert day_intervals(s, ny(2026, 11, 1)) == [(utc(2026, 11, 1, 4), utc(2026, 11, 1, 13))]
    assert hours_open(s, ny(2026, 11, 1)) == 9


def test_nine_to_five_is_eight_real_hours_on_us_fall_back_day():
    s = sched(EVERY_DAY)
    assert day_intervals(s, ny(2026, 11, 1)) == [(utc(2026, 11, 1, 14), utc(2026, 11, 1, 22))]
    assert day_intervals(s, ny(2026, 10, 31)) == [(utc(2026, 10, 31, 13), utc(2026, 10, 31, 21))]


def test_ambiguous_start_uses_the_first_occurrence():
    s = sched({"sun": [["01:30", "03:00"]]})
    assert day_intervals(s, ny(2026, 11, 1)) == [(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8))]
    assert is_open(s, utc(2026, 11, 1, 5, 30))  # 01:30 EDT


def test_ambiguous_end_also_uses_the_first_occurrence():
    s = sched({"sun": [["00:00", "01:30"]]})
    assert day_intervals(s, ny(2026, 11, 1)) == [(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30))]
    assert not is_open(s, utc(2026, 11, 1, 6, 15))  # 01:15 EST, the repeat


def test_ranges_touching_in_the_repeated_hour_stay_contiguous():
    s = sched({"sun": [["00:00", "01:30"], ["01:30", "03:00"]]})
    assert day_intervals(s, ny(2026, 11, 1)) == [(utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))]


def test_next_transition_across_us_fall_back_overnight():
    s = sched({"sat": [["22:00", "02:00"]]})
    assert next_transition(s, ny(2026, 10, 31, 23)) == utc(2026, 11, 1, 7)  # 02:00 EST
    assert hours_open(s, ny(2026, 10, 31), days=2) == 5


# ------------------------------------------------------------------ DST, Berlin

# 2026-03-29 (Sun): 02:00 CET -> 03:00 CEST at 01:00 UTC.
# 2026-10-25 (Sun): 03:00 CEST -> 02:00 CET at 01:00 UTC.

def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_berlin_nine_to_five_keeps_eight_hours_around_spring_forward():
    s = sched(EVERY_DAY, tz="Europe/Berlin")
    assert day_intervals(s, berlin(2026, 3, 28)) == [(utc(2026, 3, 28, 8), utc(2026, 3, 28, 16))]
    assert day_intervals(s, berlin(2026, 3, 29)) == [(utc(2026, 3, 29, 7), utc(2026, 3, 29, 15))]
    assert is_open(s, utc(2026, 3, 29, 7, 30)) and not is_open(s, utc(2026, 3, 28, 7, 30))


def test_berlin_spring_forward_morning_loses_an_hour():
    s = sched({"sun": [["00:00", "12:00"]]}, tz="Europe/Berlin")
    assert day_intervals(s, berlin(2026, 3, 29)) == [(utc(2026, 3, 28, 23), utc(2026, 3, 29, 10))]
    assert hours_open(s, berlin(2026, 3, 29)) == 11


def test_berlin_fall_back_morning_gains_an_hour():
    s = sched({"sun": [["00:00", "12:00"]]}, tz="Europe/Berlin")
    assert day_intervals(s, berlin(2026, 10, 25)) == [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 11))]
    assert hours_open(s, berlin(2026, 10, 25)) == 13


def test_berlin_gap_and_repeat_follow_the_same_rules():
    gap = sched({"sun": [["02:30", "04:00"]]}, tz="Europe/Berlin")
    assert next_opening(gap, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)  # 03:00 CEST
    repeat = sched({"sun": [["02:30", "04:00"]]}, tz="Europe/Berlin")
    assert next_opening(repeat, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert next_transition(repeat, utc(2026, 10, 25, 1)) == utc(2026, 10, 25, 3)  # 04:00 CET


def test_next_transition_across_berlin_spring_forward_weekend():
    s = sched(WEEKDAYS, tz="Europe/Berlin")
    assert next_transition(s, utc(2026, 3, 27, 16)) == utc(2026, 3, 30, 7)
    assert not is_open(s, utc(2026, 3, 30, 6, 59))
    assert is_open(s, utc(2026, 3, 30, 7))


def test_next_transition_across_berlin_fall_back_weekend():
    s = sched(WEEKDAYS, tz="Europe/Berlin")
    assert next_transition(s, utc(2026, 10, 23, 15)) == utc(2026, 10, 26, 8)  # Mon 09:00 CET


# ------------------------------------------------------------------ searching

def test_next_transition_is_strictly_after_the_given_instant():
    s = sched(WEEKDAYS)
    opening = ny(2026, 6, 1, 9)
    assert next_transition(s, opening) == ny(2026, 6, 1, 17)
    assert next_transition(s, opening - timedelta(microseconds=1)) == opening


def test_next_transition_returns_utc():
    s = sched(WEEKDAYS)
    result = next_transition(s, berlin(2026, 6, 1, 12))
    assert result is not None and result.utcoffset() == timedelta(0) and result.tzinfo == UTC


def test_next_transition_skips_a_closed_christmas_week():
    closed = [{"date": f"2026-12-{d}", "closed": True} for d in range(24, 32)]
    closed.append({"date": "2027-01-01", "closed": True})
    s = sched(WEEKDAYS, closed)
    assert next_transition(s, ny(2026, 12, 23, 17)) == ny(2027, 1, 4, 9)
    assert next_opening(s, ny(2026, 12, 23, 12)) == ny(2027, 1, 4, 9)


def test_next_transition_finds_a_single_opening_months_away():
    s = sched({}, [{"date": "2027-09-01", "hours": [["10:00", "11:00"]]}])
    assert next_transition(s, ny(2026, 11, 1)) == ny(2027, 9, 1, 10)
    assert next_transition(s, ny(2027, 9, 1, 10)) == ny(2027, 9, 1, 11)
    assert next_transition(s, ny(2027, 9, 1, 11)) is None


def test_nothing_beyond_the_400_day_horizon_is_reported():
    s = sched({}, [{"date": "2028-06-01", "hours": [["10:00", "11:00"]]}])
    assert next_transition(s, ny(2026, 1, 1)) is None
    assert next_opening(s, ny(2026, 1, 1)) is None


def test_schedule_without_any_hours_never_changes():
    s = sched({})
    assert next_transition(s, utc(2026, 6, 1)) is None
    assert next_opening(s, utc(2026, 6, 1)) is None
    assert open_intervals(s, utc(2026, 6, 1), utc(2026, 6, 8)) == []


def test_always_open_schedule_never_changes():
    s = sched({d: [["00:00", "24:00"]] for d in EVERY_DAY})
    assert is_open(s, utc(2026, 3, 8, 7))
    assert next_transition(s, utc(2026, 3, 8, 7)) is None
    assert next_opening(s, utc(2026, 3, 8, 7)) is None


def test_always_open_schedule_with_a_holiday_changes_at_the_holiday():
    s = sched({d: [["00:00", "24:00"]] for d in EVERY_DAY}, [{"date": "2026-12-25", "closed": True}])
    assert next_transition(s, ny(2026, 6, 1)) == ny(2026, 12, 25)
    assert next_opening(s, ny(2026, 6, 1)) == ny(2026, 12, 26)


def test_next_opening_when_closed_is_the_coming_opening():
    s = sched(WEEKDAYS)
    assert next_opening(s, ny(2026, 6, 5, 18)) == ny(2026, 6, 8, 9)  # Fri evening -> Mon
    assert next_opening(s, ny(2026, 6, 1, 8)) == ny(2026, 6, 1, 9)


def test_next_opening_when_open_is_after_the_current_period():
    s = sched(WEEKDAYS)
    assert next_opening(s, ny(2026, 6, 1, 10)) == ny(2026, 6, 2, 9)
    assert next_opening(s, ny(2026, 6, 1, 9)) == ny(2026, 6, 2, 9)


def test_next_opening_ignores_a_range_that_merely_continues_the_current_one():
    s = sched({"mon": [["22:00", "24:00"]], "tue": [["00:00", "08:00"], ["10:00", "12:00"]]})
    assert next_opening(s, ny(2026, 6, 1, 23)) == ny(2026, 6, 2, 10)


# ------------------------------------------------------------------ intervals

def test_open_intervals_for_a_week_preview():
    s = sched(WEEKDAYS)
    week = open_intervals(s, ny(2026, 6, 1), ny(2026, 6, 8))
    assert week == [(ny(2026, 6, d, 9), ny(2026, 6, d, 17)) for d in range(1, 6)]
    assert all(a.tzinfo == UTC and b.tzinfo == UTC for a, b in week)


def test_open_intervals_are_clipped_to_the_window():
    s = sched(WEEKDAYS)
    assert open_intervals(s, ny(2026, 6, 1, 12), ny(2026, 6, 2, 10)) == [
        (ny(2026, 6, 1, 12), ny(2026, 6, 1, 17)),
        (ny(2026, 6, 2, 9), ny(2026, 6, 2, 10)),
    ]


def test_open_intervals_include_an_overnight_range_started_before_the_window():
    s = sched({"sun": [["22:00", "02:00"]]})
    assert open_intervals(s, ny(2026, 6, 8), ny(2026, 6, 9)) == [(ny(2026, 6, 8), ny(2026, 6, 8, 2))]


def test_open_intervals_merge_across_days():
    s = sched({d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed")})
    assert open_intervals(s, ny(2026, 5, 31), ny(2026, 6, 7)) == [(ny(2026, 6, 1), ny(2026, 6, 4))]


def test_open_intervals_merge_overnight_with_next_day_hours():
    s = sched({"mon": [["20:00", "09:00"]], "tue": [["08:00", "17:00"]]})
    assert open_intervals(s, ny(2026, 6, 1), ny(2026, 6, 3)) == [(ny(2026, 6, 1, 20), ny(2026, 6, 2, 17))]


def test_empty_or_inverted_window_has_no_intervals():
    s = sched(WEEKDAYS)
    assert open_intervals(s, ny(2026, 6, 1, 12), ny(2026, 6, 1, 12)) == []
    assert open_intervals(s, ny(2026, 6, 2), ny(2026, 6, 1)) == []
