"""A widget's notification settings: digest schedule and emails to visitors.

Kept beside the widget (not in it) so widgets created before these settings
existed simply use the defaults, which need no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso, utcnow
from core.digests import DEFAULT_TIME, DigestSchedule, check_timezone, format_time, next_due_at, parse_days, parse_time
from core.errors import ValidationFailed
from core.models import Widget, WidgetNotifySettings
from core.schedule import DAYS

DEFAULTS: dict[str, Any] = {
    "digest_enabled": True,
    "digest_time": DEFAULT_TIME,
    "digest_days": list(DAYS),
    "digest_timezone": None,  # null: the widget's schedule zone, else UTC
    "digest_channel": True,
    "digest_channel_id": None,  # a managers' channel; null: the widget's bound channel
    "digest_email": False,
    "transcript_email": False,
}


def _time(value: Any) -> str:
    if not isinstance(value, str):
        raise v.FieldError("must be a time like 09:00")
    try:
        return format_time(parse_time(value))
    except ValueError as exc:
        raise v.FieldError(str(exc)) from None


def _days(value: Any) -> list[str]:
    days = v.list_of(value, lambda d: v.choice(d, DAYS), max_items=7)
    if not days:
        raise v.FieldError("must name at least one day (turn digests off with digest_enabled: false)")
    return [d for d in DAYS if d in days]


def _zone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise v.FieldError("must be an IANA time zone like Europe/Berlin, or null")
    try:
        return check_timezone(value)
    except ValueError as exc:
        raise v.FieldError(str(exc)) from None


def _channel_id(value: Any) -> str | None:
    if value is None:
        return None
    cleaned = v.text(value, max_len=200)
    if cleaned is None or any(ch.isspace() for ch in cleaned):
        raise v.FieldError("must be a channel id (Slack C..., Teams 19:...@thread.tacv2) or null")
    return cleaned


def clean(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, set(DEFAULTS))
    checks: dict[str, Any] = {
        "digest_enabled": v.boolean,
        "digest_time": _time,
        "digest_days": _days,
        "digest_timezone": _zone,
        "digest_channel": v.boolean,
        "digest_channel_id": _channel_id,
        "digest_email": v.boolean,
        "transcript_email": v.boolean,
    }
    c = v.Checker()
    out = {name: c.check(name, checks[name], value) for name, value in data.items()}
    c.done()
    return out


def values_of(row: WidgetNotifySettings | None) -> dict[str, Any]:
    """The settings of a row, or the defaults when the widget has none."""
    if row is None:
        return dict(DEFAULTS)
    return {name: getattr(row, name) for name in DEFAULTS}


async def get_settings(session: AsyncSession, widget_id: int) -> dict[str, Any]:
    return values_of(await session.get(WidgetNotifySettings, widget_id))


async def update_settings(session: AsyncSession, widget: Widget, data: Any) -> dict[str, Any]:
    fields = clean(data)
    row = await session.get(WidgetNotifySettings, widget.id)
    if row is None:
        row = WidgetNotifySettings(widget_id=widget.id, **DEFAULTS)
        session.add(row)
    for name, value in fields.items():
        setattr(row, name, value)
    await session.flush()
    return values_of(row)


def digest_schedule(widget: Widget, values: dict[str, Any]) -> DigestSchedule:
    zone = values["digest_timezone"] or (widget.schedule or {}).get("timezone") or "UTC"
    return DigestSchedule(
        enabled=bool(values["digest_enabled"]),
        minute=parse_time(values["digest_time"]),
        days=parse_days(values["digest_days"] or DAYS),
        timezone=zone,
    )


def settings_to_json(widget: Widget, values: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    schedule = digest_schedule(widget, values)
    return {
        "widget_id": widget.id,
        **values,
        "digest_days": list(values["digest_days"] or DAYS),
        "effective_timezone": schedule.timezone,
        "next_digest_at": iso(next_due_at(schedule, now or utcnow())),
    }
