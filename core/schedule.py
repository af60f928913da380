"""Business-hours schedules: parsing, validation and open/closed queries.

A schedule is a set of local wall-clock ranges in one IANA time zone. Every
query converts those ranges into real (UTC) intervals for only the local days
it needs, so it stays cheap enough to run for every widget on every status
recomputation.

Rules chosen where the wall clock is ambiguous (one rule, used everywhere):

* A wall time maps to the *first instant at which the clock reads that time
  or later* on that day. So a time that does not exist (inside a
  spring-forward gap) maps to the first valid instant, the transition itself
  (02:30 on the US spring day -> 03:00 EDT), and an ambiguous time (inside a
  fall-back repeat) maps to its first occurrence (fold=0). This applies to
  starts *and* ends: the mapping is monotonic, so no range can turn inside
  out, a range lying wholly inside a gap is simply empty that day, and
  ranges that touch on the wall clock (22:00-24:00 + 00:00-08:00) still touch
  in real time and merge.
* An end <= start means the range ends on the next day (["22:00", "02:00"]).
  The tail after midnight belongs to the day the range started, even when the
  next day is an exception (closed or with other hours).
* start == end is rejected: it could mean "closed" or "24 hours". A full day
  is ["00:00", "24:00"]; "24:00" is accepted as an end only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAYS",
    "HORIZON_DAYS",
    "DateException",
    "Schedule",
    "ScheduleError",
    "TimeRange",
    "is_open",
    "next_opening",
    "next_transition",
    "open_intervals",
    "parse_schedule",
    "schedule_to_json",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 400  # how far next_transition/next_opening look before giving up
_UTC = timezone.utc
_DAY = timedelta(days=1)
_TIME_RE = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|24:00)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ScheduleError(ValueError):
    """Invalid schedule JSON; the message starts with the offending field path."""


@dataclass(frozen=True)
class TimeRange:
    """One local range, in minutes after midnight; end <= start ends the next day."""

    start: int  # 0..1439
    end: int  # 1..1440 (1440 = "24:00")

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True)
class DateException:
    """A date whose hours replace the weekday's; hours=None means closed all day."""

    date: date
    hours: tuple[TimeRange, ...] | None = None


@dataclass(frozen=True)
class Schedule:
    """Weekly hours (index 0 = Monday) plus dated exceptions, in one IANA zone."""

    timezone: str
    weekly: tuple[tuple[TimeRange, ...], ...]
    exceptions: tuple[DateException, ...] = ()

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly must have 7 entries, Monday first")
        ZoneInfo(self.timezone)  # fail early on a bad zone

    @cached_property
    def _by_date(self) -> dict[date, DateException]:
        return {e.date: e for e in self.exceptions}

    def hours_on(self, day: date) -> tuple[TimeRange, ...]:
        """Ranges that start on this local date (exception first, else weekday)."""
        exc = self._by_date.get(day)
        if exc is not None:
            return exc.hours or ()
        return self.weekly[day.weekday()]

    @property
    def has_hours(self) -> bool:
        """False when the schedule can never be open (lets queries stop early)."""
        return any(self.weekly) or any(e.hours for e in self.exceptions)


# ---------------------------------------------------------------- parsing


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_time(value: object, path: str, *, is_end: bool) -> int:
    if not isinstance(value, str) or not _TIME_RE.match(value):
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        raise ScheduleError(f"{path}: {shown} is not a time (HH:MM)")
    if value == "24:00" and not is_end:
        raise ScheduleError(f'{path}: "24:00" is only allowed as an end time')
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _parse_ranges(value: object, path: str) -> tuple[TimeRange, ...]:
    if not isinstance(value, list):
        raise ScheduleError(f'{path}: expected a list of ["HH:MM", "HH:MM"] ranges')
    out = []
    for i, pair in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ScheduleError(f'{p}: expected ["HH:MM", "HH:MM"]')
        start = _parse_time(pair[0], p, is_end=False)
        end = _parse_time(pair[1], p, is_end=True)
        if start == end:
            raise ScheduleError(
                f'{p}: start and end are both "{pair[0]}" (ambiguous); '
                'use ["00:00", "24:00"] for a full day'
            )
        out.append(TimeRange(start, end))
    return tuple(out)


def _check_keys(obj: dict, allowed: tuple[str, ...], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ScheduleError(
                f"{prefix}{key}: unknown field (expected one of {', '.join(allowed)})"
            )


def _parse_exception(item: object, path: str) -> DateException:
    if not isinstance(item, dict):
        raise ScheduleError(f"{path}: expected an object")
    _check_keys(item, ("date", "closed", "hours"), f"{path}.")
    raw = item.get("date")
    if raw is None:
        raise ScheduleError(f"{path}.date: required (YYYY-MM-DD)")
    try:
        if not isinstance(raw, str) or not _DATE_RE.match(raw):
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        shown = f'"{raw}"' if isinstance(raw, str) else repr(raw)
        raise ScheduleError(f"{path}.date: {shown} is not a date (YYYY-MM-DD)") from None
    if "closed" in item and "hours" in item:
        raise ScheduleError(f'{path}: give either "closed": true or "hours", not both')
    if "closed" in item:
        if item["closed"] is not True:
            raise ScheduleError(
                f'{path}.closed: must be true (to open on a date, give "hours")'
            )
        return DateException(day, None)
    if "hours" in item:
        return DateException(day, _parse_ranges(item["hours"], f"{path}.hours"))
    raise ScheduleError(f'{path}: needs "closed": true or "hours"')


def parse_schedule(data: object) -> Schedule:
    """Validate schedule JSON (API/CLI input) into a Schedule, or raise ScheduleError."""
    if not isinstance(data, dict):
        raise ScheduleError("schedule: expected an object")
    _check_keys(data, ("timezone", "weekly", "exceptions"), "")
    tz = data.get("timezone")
    if not isinstance(tz, str) or not tz:
        raise ScheduleError(
            'timezone: required, an IANA time zone name such as "Europe/Berlin"'
        )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f'timezone: "{tz}" is not an IANA time zone') from None

    weekly_raw = data.get("weekly", {})
    if not isinstance(weekly_raw, dict):
        raise ScheduleError("weekly: expected an object with keys mon..sun")
    for key in weekly_raw:
        if key not in DAYS:
            raise ScheduleError(f"weekly.{key}: unknown day (use {', '.join(DAYS)})")
    weekly = tuple(
        _parse_ranges(weekly_raw[d], f"weekly.{d}") if d in weekly_raw else ()
        for d in DAYS
    )

    exc_raw = data.get("exceptions", [])
    if not isinstance(exc_raw, list):
        raise ScheduleError("exceptions: expected a list")
    exceptions: list[DateException] = []
    seen: dict[date, int] = {}
    for i, item in enumerate(exc_raw):
        exc = _parse_exception(item, f"exceptions[{i}]")
        if exc.date in seen:
            raise ScheduleError(
                f"exceptions[{i}].date: {exc.date.isoformat()} is already "
                f"listed at exceptions[{seen[exc.date]}]"
            )
        seen[exc.date] = i
        exceptions.append(exc)
    return Schedule(tz, weekly, tuple(exceptions))


def _ranges_json(ranges: tuple[TimeRange, ...]) -> list[list[str]]:
    return [[_fmt(r.start), _fmt(r.end)] for r in ranges]


def schedule_to_json(s: Schedule) -> dict:
    """JSON form accepted by parse_schedule; all seven days are listed."""
    exceptions: list[dict] = []
    for e in s.exceptions:
        if e.hours is None:
            exceptions.append({"date": e.date.isoformat(), "closed": True})
        else:
            exceptions.append({"date": e.date.isoformat(), "hours": _ranges_json(e.hours)})
    return {
        "timezone": s.timezone,
        "weekly": {d: _ranges_json(r) for d, r in zip(DAYS, s.weekly)},
        "exceptions": exceptions,
    }


# ---------------------------------------------------------------- instants


@lru_cache(maxsize=32768)
def _instant(tzname: str, day: date, minute: int) -> datetime:
    """First UTC instant at which the local clock reads day+minute or later.

    Cached: hundreds of widgets share a few zones and the same few days.
    """
    tz = ZoneInfo(tzname)
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = wall.replace(tzinfo=tz).astimezone(_UTC)  # fold=0: first occurrence
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=1 lands before the transition, fold=0 after it.
    # Binary-search the transition second (tz transitions are whole seconds).
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(_UTC)
    lo_s, hi_s = 0, int((first - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        reading = (lo + timedelta(seconds=mid)).astimezone(tz).replace(tzinfo=None)
        if reading >= wall:
            hi_s = mid
        else:
            lo_s = mid
    return lo + timedelta(seconds=hi_s)


def _day_intervals(s: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    """Real intervals of the ranges starting on local `day`, sorted by start."""
    out = []
    for r in s.hours_on(day):
        a = _instant(s.timezone, day, r.start)
        b = _instant(s.timezone, day, r.end + 1440 if r.overnight else r.end)
        if a < b:
            out.append((a, b))
    out.sort()
    return out


def _merged(s: Schedule, first: date, last: date) -> Iterator[tuple[datetime, datetime]]:
    """Merged open intervals from ranges starting on local days first..last.

    Lazy, so searches stop at the first answer. Starts never go backwards from
    one day to the next (the wall->instant mapping is monotonic), so a single
    sweep merges correctly.
    """
    cur: tuple[datetime, datetime] | None = None
    day = first
    while day <= last:
        for a, b in _day_intervals(s, day):
            if cur is not None and a <= cur[1]:
                if b > cur[1]:
                    cur = (cur[0], b)
            else:
                if cur is not None:
                    yield cur
                cur = (a, b)
        day += _DAY
    if cur is not None:
        yield cur


def _utc(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(_UTC)


def _local_date(s: Schedule, at: datetime) -> date:
    return at.astimezone(ZoneInfo(s.timezone)).date()


# Ranges from local day d lie within [midnight d, midnight d+2); two days of
# margin on each side also cover zones that fall back across midnight.
_MARGIN = timedelta(days=2)


# ---------------------------------------------------------------- queries


def is_open(s: Schedule, at: datetime) -> bool:
    """True if `at` (timezone-aware) falls inside an open range."""
    at = _utc(at)
    day = _local_date(s, at)
    d = day - _MARGIN
    while d <= day + _DAY:
        if any(a <= at < b for a, b in _day_intervals(s, d)):
            return True
        d += _DAY
    return False


def _search(s: Schedule, at: datetime) -> tuple[datetime, Iterator[tuple[datetime, datetime]]]:
    at = _utc(at)
    limit = at + timedelta(days=HORIZON_DAYS)
    start = _local_date(s, at) - _MARGIN
    end = _local_date(s, limit) + _MARGIN
    return limit, _merged(s, start, end) if s.has_hours else iter(())


def next_transition(s: Schedule, at: datetime) -> datetime | None:
    """First instant strictly after `at` where is_open flips (UTC), or None within the horizon."""
    limit, intervals = _search(s, at)
    at = _utc(at)
    for a, b in intervals:
        if b <= at:
            continue
        x = a if a > at else b
        return x if x <= limit else None
    return None


def next_opening(s: Schedule, at: datetime) -> datetime | None:
    """Start of the next open period after `at` (after the current one if open now)."""
    limit, intervals = _search(s, at)
    at = _utc(at)
    for a, _ in intervals:
        if a > at:
            return a if a <= limit else None
    return None


def open_intervals(
    s: Schedule, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Merged open intervals (UTC) clipped to [start, end), e.g. for a week preview."""
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        return []
    out = []
    first = _local_date(s, start) - _MARGIN
    last = _local_date(s, end) + _MARGIN
    for a, b in _merged(s, first, last):
        if b <= start:
            continue
        if a >= end:
            break
        out.append((max(a, start), min(b, end)))
    return out
