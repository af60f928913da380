"""Widgets: settings, their validation and their JSON shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso
from core.errors import NotFound, ValidationFailed
from core.models import Widget
from core.schedule import parse_schedule, schedule_to_json
from core.tokens import random_key

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "offline_message": "We're away right now. Leave a message and we'll get back to you by email.",
    "online_tab_text": "Chat with us",
    "offline_tab_text": "Leave a message",
    "hide_when_offline": False,
    "offline_form": True,
    "ai_enabled": False,
    "ai_always": False,
    "allowed_origins": [],
    "notify_emails": [],
    "session_timeout_s": 900,
    "colors": {"primary": "#2563eb", "text": "#ffffff"},
    "position": "right",
    "schedule": None,
    "retention_days": None,
}

SETTINGS = set(DEFAULTS) | {"name"}


def _schedule(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return schedule_to_json(parse_schedule(value))


def _retention(value: Any) -> int | None:
    return None if value is None else v.integer(value, lo=1, hi=3650)


def clean_settings(data: Any, *, creating: bool) -> dict[str, Any]:
    """Validate widget settings; every bad field is named in one error."""
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, SETTINGS)
    c = v.Checker()
    out: dict[str, Any] = {}
    checks: dict[str, tuple[Any, dict[str, Any]]] = {
        "name": (v.text, {"max_len": 200}),
        "enabled": (v.boolean, {}),
        "offline_message": (v.text, {"max_len": 2000}),
        "online_tab_text": (v.text, {"max_len": 100}),
        "offline_tab_text": (v.text, {"max_len": 100}),
        "hide_when_offline": (v.boolean, {}),
        "offline_form": (v.boolean, {}),
        "ai_enabled": (v.boolean, {}),
        "ai_always": (v.boolean, {}),
        "allowed_origins": (v.list_of, {"item": v.origin, "max_items": 50}),
        "notify_emails": (v.list_of, {"item": v.email, "max_items": 20}),
        "session_timeout_s": (v.integer, {"lo": 60, "hi": 7 * 86400}),
        "colors": (v.colors, {}),
        "position": (v.choice, {"options": ("right", "left")}),
        "schedule": (_schedule, {}),
        "retention_days": (_retention, {}),
    }
    if creating and "name" not in data:
        c.errors["name"] = "is required"
    for field, value in data.items():
        fn, kwargs = checks[field]
        out[field] = c.check(field, fn, value, **kwargs)
    c.done()
    return out


async def create_widget(session: AsyncSession, data: dict[str, Any]) -> Widget:
    settings = {**DEFAULTS, **clean_settings(data, creating=True)}
    widget = Widget(key=random_key(), **settings)
    session.add(widget)
    await session.flush()
    return widget


async def update_widget(session: AsyncSession, widget: Widget, data: dict[str, Any]) -> Widget:
    for field, value in clean_settings(data, creating=False).items():
        setattr(widget, field, value)
    await session.flush()
    return widget


async def get_widget(session: AsyncSession, widget_id: int) -> Widget:
    widget = await session.get(Widget, widget_id)
    if widget is None:
        raise NotFound(f"no widget with id {widget_id}")
    return widget


async def get_widget_by_key(session: AsyncSession, key: str) -> Widget:
    widget = (await session.execute(select(Widget).where(Widget.key == key))).scalar_one_or_none()
    if widget is None:
        raise NotFound("unknown widget key")
    return widget


async def find_widget(session: AsyncSession, ref: str) -> Widget:
    """A widget by key or numeric id, as the CLI accepts either."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return await get_widget(session, int(ref))
    return await get_widget_by_key(session, ref)


async def count_widgets(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count(Widget.id)))).scalar_one())


def widget_to_json(widget: Widget) -> dict[str, Any]:
    return {
        "id": widget.id,
        "key": widget.key,
        "name": widget.name,
        **{field: getattr(widget, field) for field in DEFAULTS},
        "created_at": iso(widget.created_at),
        "updated_at": iso(widget.updated_at),
    }
