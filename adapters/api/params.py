"""Reading path and query parameters, with errors that name the parameter.

Every parse failure is a :class:`ValidationFailed` naming the query parameter
(422), except unknown ids in the path, which are a plain 404: a client that
builds URLs from ids it was given never sees a validation error for them.
"""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.api.operation import Param
from core.clock import parse_instant
from core.errors import NotFound, ValidationFailed
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, parse_limit
from core.widgets import find_widget

MAX_ID = 2**63 - 1  # ids are BIGINT on PostgreSQL; larger numbers cannot exist

LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    f"Page size, 1 to {MAX_LIMIT}.",
)
CURSOR = Param("cursor", {"type": "string"}, "The `next_cursor` of the previous page.")
WIDGET_FILTER = Param("widget", {"type": "string"}, "Only items of this widget (its numeric id or its key).")


def _query_id(raw: str) -> int | None:
    if raw.isascii() and raw.isdigit() and int(raw) <= MAX_ID:
        return int(raw)
    return None


def path_id(request: web.Request, what: str, name: str = "id") -> int:
    """A numeric id from the path; anything else cannot name a row, so 404."""
    raw = request.match_info[name]
    value = _query_id(raw)
    if value is None:
        raise NotFound(f"no {what} with id {raw}")
    return value


def limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is not None and not raw.isascii():
        raw = "not-a-number"  # core's isdigit() accepts digits such as "²" that int() refuses
    return parse_limit(raw)


def cursor(request: web.Request) -> int | None:
    """The id to continue before (lists are newest first)."""
    return decode_cursor(request.query.get("cursor"))


def choice(request: web.Request, name: str, options: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value not in options:
        raise ValidationFailed.of({name: "must be one of " + ", ".join(options)})
    return value


def integer(request: web.Request, name: str, *, lo: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = _query_id(raw)
    if value is None or value < lo:
        raise ValidationFailed.of({name: f"must be a whole number of at least {lo}"})
    return value


# A "+" in a query string decodes to a space, so "...T09:00:00+02:00" sent
# unencoded arrives as "...T09:00:00 02:00"; put the sign back.
_LOST_PLUS = re.compile(r" (\d{2}(?::?\d{2})?)$")


def instant(request: web.Request, name: str) -> datetime | None:
    """An ISO-8601 instant with an offset (``Z`` accepted)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_instant(_LOST_PLUS.sub(r"+\1", raw))
    except ValueError:
        raise ValidationFailed.of(
            {name: "must be an ISO-8601 instant with an offset, like 2025-01-31T09:00:00Z"}
        ) from None


async def widget_filter(request: web.Request, session: AsyncSession) -> int | None:
    """The id of the widget named by ``?widget=`` (id or key); unknown ones are refused."""
    ref = request.query.get("widget")
    if ref is None:
        return None
    ref = ref.strip()
    if not ref or len(ref) > 40 or (ref.isdigit() and _query_id(ref) is None):
        raise ValidationFailed.of({"widget": "no widget with this id or key"})
    try:
        return (await find_widget(session, ref)).id
    except NotFound:
        raise ValidationFailed.of({"widget": "no widget with this id or key"}) from None
