"""Field checks shared by every entry point (API, widget form, CLI).

Each check returns the cleaned value or raises :class:`FieldError`; a
:class:`Checker` collects them so one response names every bad field.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from core.errors import ValidationFailed

# Pragmatic address syntax: one @, a dot in the domain, no spaces or brackets.
_EMAIL = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class FieldError(ValueError):
    pass


def text(value: Any, *, max_len: int, required: bool = True, strip: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FieldError("is required")
        return None
    if not isinstance(value, str):
        raise FieldError("must be a string")
    if strip:
        value = value.strip()
    if "\x00" in value:
        raise FieldError("must not contain NUL characters")
    if len(value) > max_len:
        raise FieldError(f"must be at most {max_len} characters")
    return value


def email(value: Any, *, required: bool = True) -> str | None:
    cleaned = text(value, max_len=320, required=required)
    if cleaned is None:
        return None
    if not _EMAIL.match(cleaned):
        raise FieldError("is not a valid email address")
    return cleaned


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError("must be true or false")
    return value


def integer(value: Any, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError("must be an integer")
    if not lo <= value <= hi:
        raise FieldError(f"must be between {lo} and {hi}")
    return value


def http_url(value: Any, *, required: bool = False, max_len: int = 2000) -> str | None:
    cleaned = text(value, max_len=max_len, required=required)
    if cleaned is None:
        return None
    parts = urlsplit(cleaned)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise FieldError("must be an http(s) URL")
    return cleaned


def origin(value: Any) -> str:
    """A browser origin, ``scheme://host[:port]``; ``*`` allows any."""
    if value == "*":
        return value
    cleaned = text(value, max_len=300)
    assert cleaned is not None
    parts = urlsplit(cleaned)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
        raise FieldError(f"{cleaned!r} is not an origin like https://example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()


def list_of(value: Any, item: Any, *, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError("must be a list")
    if len(value) > max_items:
        raise FieldError(f"must have at most {max_items} items")
    return [item(v) for v in value]


def colors(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise FieldError('must be an object like {"primary": "#2563eb", "text": "#ffffff"}')
    unknown = set(value) - {"primary", "text"}
    if unknown:
        raise FieldError(f"unknown colour {sorted(unknown)[0]!r}; use primary and text")
    for name, color in value.items():
        if not isinstance(color, str) or not _HEX_COLOR.match(color):
            raise FieldError(f"{name} must be a hex colour like #2563eb")
    return dict(value)


def choice(value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise FieldError("must be one of " + ", ".join(options))
    return value


class Checker:
    """Collects field errors so the caller hears about all of them at once."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def check(self, field: str, fn: Any, value: Any, **kwargs: Any) -> Any:
        try:
            return fn(value, **kwargs)
        except FieldError as exc:
            self.errors[field] = str(exc)
            return None
        except ValueError as exc:  # e.g. ScheduleError with its own path
            self.errors[field] = str(exc)
            return None

    def done(self) -> None:
        if self.errors:
            raise ValidationFailed.of(self.errors)


def reject_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed.of({name: "is not a known field" for name in unknown})
