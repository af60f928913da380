"""Reading HTML form posts into the plain dicts core's validators take."""

from __future__ import annotations

from typing import Any

from multidict import MultiDictProxy


def text(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def checked(form: MultiDictProxy[Any], name: str) -> bool:
    """HTML sends a checkbox only when it is ticked."""
    return form.get(name) is not None


def lines(form: MultiDictProxy[Any], name: str) -> list[str]:
    """A textarea of one item per line (commas work too)."""
    raw = text(form, name).replace(",", "\n")
    return [line.strip() for line in raw.splitlines() if line.strip()]


def whole_number(form: MultiDictProxy[Any], name: str) -> int | str:
    """An int when the field holds one, else the raw text (so core names the field in its error)."""
    raw = text(form, name)
    return int(raw) if raw.isdigit() and len(raw) < 12 else raw


def all_values(form: MultiDictProxy[Any], name: str) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in form.getall(name, [])]
