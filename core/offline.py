"""Offline messages: what visitors leave when nobody is there.

Stored before anything else happens, so a failure further along (email,
webhook, channel post) can be retried and never loses the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso, utcnow
from core.errors import NotFound, ValidationFailed
from core.models import OfflineMessage, Widget, detached

MAX_MESSAGE = 5000
FORM_FIELDS = {"name", "email", "message", "page_url", "website"}
STATUSES = ("new", "handled")


class SpamRejected(Exception):
    """The honeypot was filled in: answer as if accepted, store nothing."""


def clean_submission(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, FORM_FIELDS)
    if data.get("website"):
        raise SpamRejected()
    c = v.Checker()
    out = {
        "name": c.check("name", v.text, data.get("name"), max_len=200, required=False),
        "email": c.check("email", v.email, data.get("email")),
        "message": c.check("message", v.text, data.get("message"), max_len=MAX_MESSAGE),
        "page_url": c.check("page_url", v.http_url, data.get("page_url")),
    }
    c.done()
    return out


async def store_offline_message(session: AsyncSession, widget: Widget, data: Any) -> OfflineMessage:
    """Validate and store; the row stays in the session (callers may change it further)."""
    row = OfflineMessage(widget_id=widget.id, status="new", **clean_submission(data))
    session.add(row)
    await session.flush()
    return row


_COLUMNS = ("widget_id", "name", "email", "message", "page_url", "status", "created_at")
# Built once: constructing it per submission cost about as much as running it. Answered in
# the order given: one statement on PostgreSQL; on SQLite SQLAlchemy keeps the order by
# inserting the rows one by one, in-process.
_INSERT_MANY = insert(OfflineMessage.__table__).returning(*OfflineMessage.__table__.c, sort_by_parameter_order=True)


def _row_values(widget: Widget, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Every column of a new row (``_COLUMNS``) for a cleaned submission."""
    values = {"widget_id": widget.id, "status": "new", "created_at": now, **fields}
    return {name: values.get(name) for name in _COLUMNS}


async def add_offline_messages(
    session: AsyncSession, submissions: Sequence[tuple[Widget, dict[str, Any]]]
) -> list[OfflineMessage]:
    """Store already cleaned submissions (widget, fields; see ``clean_submission``) with one
    INSERT ... RETURNING, in order (core/form_batches.py).

    The rows come back detached (plain snapshots of what was stored, not
    tracked by the session), which costs half of an ORM flush.
    """
    now = utcnow()
    params = [_row_values(widget, fields, now) for widget, fields in submissions]
    stored = (await session.execute(_INSERT_MANY, params)).all()
    return [detached(OfflineMessage, one) for one in stored]


async def add_offline_message(session: AsyncSession, widget: Widget, fields: dict[str, Any]) -> OfflineMessage:
    """:func:`add_offline_messages` for one submission."""
    (row,) = await add_offline_messages(session, [(widget, fields)])
    return row


async def list_offline_messages(
    session: AsyncSession,
    *,
    widget_id: int | None = None,
    status: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[OfflineMessage]:
    """Newest first; fetches ``limit + 1`` rows so the caller can tell if more exist."""
    query = select(OfflineMessage).order_by(OfflineMessage.id.desc()).limit(limit + 1)
    if widget_id is not None:
        query = query.where(OfflineMessage.widget_id == widget_id)
    if status is not None:
        query = query.where(OfflineMessage.status == status)
    if since is not None:
        query = query.where(OfflineMessage.created_at >= since)
    if before_id is not None:
        query = query.where(OfflineMessage.id < before_id)
    return list((await session.execute(query)).scalars())


async def get_offline_message(session: AsyncSession, message_id: int) -> OfflineMessage:
    row = await session.get(OfflineMessage, message_id)
    if row is None:
        raise NotFound(f"no offline message with id {message_id}")
    return row


def set_status(row: OfflineMessage, status: Any) -> OfflineMessage:
    try:
        status = v.choice(status, STATUSES)
    except v.FieldError as exc:
        raise ValidationFailed.of({"status": str(exc)}) from exc
    if status != row.status:  # marking handled twice keeps the first handled_at
        row.status = status
        row.handled_at = utcnow() if status == "handled" else None
    return row


def offline_message_to_json(row: OfflineMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "widget_id": row.widget_id,
        "name": row.name,
        "email": row.email,
        "message": row.message,
        "page_url": row.page_url,
        "status": row.status,
        "created_at": iso(row.created_at),
        "handled_at": iso(row.handled_at),
    }
