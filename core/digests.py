"""Manager digests as pure functions: when one is due, and what it says.

A digest schedule is a local wall-clock time on some weekdays in one IANA
time zone (default: daily at 09:00 in the widget's schedule zone, else UTC).
Wall times map to instants with the same rule as business hours (see
``core/schedule.py``): a time inside a spring-forward gap means the first
instant after the gap, an ambiguous one its first occurrence. So a digest is
due exactly once per scheduled day, whatever the clocks do.

Only "the most recent due instant" matters to the sender: a worker that was
down for three days sends one digest covering everything since the last one,
not three, and not none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.clock import iso
from core.links import absolute, offline_message_path
from core.schedule import DAYS
from core.schedule import _instant as wall_instant  # one wall-clock rule for the whole service

DEFAULT_TIME = "09:00"
MAX_ITEMS = 50  # a digest is a summary; the rest is counted and one click away
FIRST_LINE_MAX = 140
_LOOKBACK_DAYS = 8  # any weekday set repeats within a week, plus a day of zone offset


@dataclass(frozen=True)
class DigestSchedule:
    enabled: bool = True
    minute: int = 9 * 60  # minutes after local midnight
    days: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))  # 0 = Monday
    timezone: str = "UTC"


def parse_time(value: str) -> int:
    """``"HH:MM"`` (24 h) to minutes after midnight."""
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("must be a time like 09:00")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError("must be a time between 00:00 and 23:59")
    return h * 60 + m


def format_time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_days(values: Iterable[str]) -> frozenset[int]:
    days = frozenset(DAYS.index(d) for d in values)
    return days or frozenset(range(7))


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone like Europe/Berlin") from None
    return name


def _due_on(s: DigestSchedule, day: date) -> datetime | None:
    if day.weekday() not in s.days:
        return None
    return wall_instant(s.timezone, day, s.minute)


def last_due_at(s: DigestSchedule, now: datetime) -> datetime | None:
    """The most recent scheduled instant at or before ``now``; None if digests are off."""
    if not s.enabled or not s.days:
        return None
    today = now.astimezone(ZoneInfo(s.timezone)).date()
    for back in range(_LOOKBACK_DAYS + 1):
        due = _due_on(s, today - timedelta(days=back))
        if due is not None and due <= now:
            return due
    return None


def previous_due_before(s: DigestSchedule, at: datetime) -> datetime | None:
    """The scheduled instant before ``at``: where a first digest's period starts."""
    return last_due_at(s, at - timedelta(microseconds=1))


def next_due_at(s: DigestSchedule, now: datetime) -> datetime | None:
    """The first scheduled instant after ``now`` (for display)."""
    if not s.enabled or not s.days:
        return None
    today = now.astimezone(ZoneInfo(s.timezone)).date()
    for ahead in range(_LOOKBACK_DAYS + 1):
        due = _due_on(s, today + timedelta(days=ahead))
        if due is not None and due > now:
            return due
    return None


# ---------------------------------------------------------------- content


@dataclass(frozen=True)
class DigestItem:
    id: int
    name: str | None
    email: str
    message: str
    status: str
    created_at: datetime


def first_line(text: str, max_len: int = FIRST_LINE_MAX) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= max_len else line[: max_len - 1].rstrip() + "…"


def build_digest(
    widget: dict[str, Any], items: list[DigestItem], period_start: datetime, period_end: datetime
) -> dict[str, Any]:
    """The digest as JSON-able data: counts, then unhandled messages first, oldest first.

    Oldest first within each group because the longest-waiting visitor is
    the one to answer next.
    """
    ordered = sorted(items, key=lambda i: (i.status != "new", i.created_at, i.id))
    shown = ordered[:MAX_ITEMS]
    return {
        "widget": widget,
        "period_start": iso(period_start),
        "period_end": iso(period_end),
        "count": len(items),
        "new_count": sum(1 for i in items if i.status == "new"),
        "handled_count": sum(1 for i in items if i.status != "new"),
        "items": [
            {
                "id": i.id,
                "name": i.name,
                "email": i.email,
                "first_line": first_line(i.message),
                "status": i.status,
                "created_at": iso(i.created_at),
                "link_path": offline_message_path(i.id),
            }
            for i in shown
        ],
        "more": len(ordered) - len(shown),
    }


def digest_title(content: dict[str, Any]) -> str:
    count, new = content["count"], content["new_count"]
    noun = "offline message" if count == 1 else "offline messages"
    return f"{content['widget']['name']}: {count} {noun} ({new} unhandled)"


def digest_text(content: dict[str, Any], base_url: str) -> str:
    """The digest as plain text, for email bodies and chat platforms without rich layout."""
    lines = [digest_title(content), ""]
    for item in content["items"]:
        who = f"{item['name']} <{item['email']}>" if item["name"] else item["email"]
        mark = "[new]" if item["status"] == "new" else "[handled]"
        lines.append(f"{mark} {who}: {item['first_line']}")
        lines.append(f"    {absolute(base_url, item['link_path'])}")
    if content["more"]:
        lines.append(f"... and {content['more']} more")
    return "\n".join(lines)
