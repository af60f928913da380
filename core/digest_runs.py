"""Sending due digests: one ``Digest`` row per widget and period, with its deliveries.

Exactly-once is structural rather than a lock someone must remember to
take: the digest row is unique per (widget, period_end) and is inserted in
the same transaction as its outbox rows. Two workers that both decide a
digest is due race on that insert; one commits, the other's transaction
(its outbox rows included) rolls back. A worker that starts after downtime
finds the latest due instant has no row yet and sends it, once.

Empty periods still get a row (so the next digest starts from there) but
send nothing: "0 messages" every morning would teach people to ignore it.
A period that ended before the widget was created is not due at all: a new
widget's first digest is its first period's end, covering the time since
it was created (600 widgets created at once wrote 600 empty rows at the
next minute otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.bindings import bindings_for_widget
from core.clock import utcnow
from core.db import Database
from core.digests import DigestItem, build_digest, last_due_at, previous_due_before
from core.mail import plan_digest_emails
from core.models import Digest, OfflineMessage, Widget, WidgetNotifySettings
from core.notify_settings import digest_schedule, values_of
from core.outbox import enqueue
from core.write_each import write_each

log = logging.getLogger(__name__)


def channel_kind(platform: str) -> str:
    """The outbox kind of a digest posted to a bound channel; the platform adapter delivers it."""
    return f"{platform}.digest"


async def _latest_end(session: AsyncSession, widget_id: int) -> datetime | None:
    query = select(func.max(Digest.period_end)).where(Digest.widget_id == widget_id)
    return (await session.execute(query)).scalar_one_or_none()


async def _items(session: AsyncSession, widget_id: int, start: datetime, end: datetime) -> list[DigestItem]:
    rows = await session.execute(
        select(OfflineMessage).where(
            OfflineMessage.widget_id == widget_id,
            OfflineMessage.created_at >= start,
            OfflineMessage.created_at < end,
        )
    )
    return [
        DigestItem(r.id, r.name, r.email, r.message, r.status, r.created_at)
        for r in rows.scalars()
    ]


async def send_digest(
    session: AsyncSession, widget: Widget, values: dict[str, Any], period_end: datetime
) -> Digest | None:
    """Write the digest for the period ending ``period_end`` and its deliveries.

    None when a digest for this or a later period exists already (another
    worker sent it, or the schedule moved earlier).
    """
    latest = await _latest_end(session, widget.id)
    if latest is not None and latest >= period_end:
        return None
    schedule = digest_schedule(widget, values)
    start = latest or previous_due_before(schedule, period_end) or period_end - timedelta(days=1)
    items = await _items(session, widget.id, start, period_end)
    content = build_digest({"id": widget.id, "key": widget.key, "name": widget.name}, items, start, period_end)
    digest = Digest(
        widget_id=widget.id, period_start=start, period_end=period_end, message_count=len(items), content=content
    )
    try:
        async with session.begin_nested():
            session.add(digest)
            await session.flush()
    except IntegrityError:
        return None  # another worker inserted it between our read and our write
    if not items:
        return digest
    if values["digest_channel"]:
        for binding in await bindings_for_widget(session, widget.id):
            enqueue(
                session,
                channel_kind(binding.platform),
                {
                    "binding_id": binding.id,
                    "digest_id": digest.id,
                    "widget_id": widget.id,
                    "digest": content,
                    "channel_id": values.get("digest_channel_id"),  # managers' channel, else the binding's
                },
                ref=("digest", digest.id),
            )
    if values["digest_email"]:
        plan_digest_emails(session, widget, digest)
    return digest


class DigestRunner:
    """Finds widgets whose digest is due and sends each once; run every minute by the worker."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_enqueued = on_enqueued

    async def _due(self, now: datetime) -> list[tuple[int, datetime]]:
        async with self.db.read() as session:
            rows = await session.execute(
                select(Widget, WidgetNotifySettings)
                .outerjoin(WidgetNotifySettings, WidgetNotifySettings.widget_id == Widget.id)
                .order_by(Widget.id)  # two workers lock widgets' rows in one order: no deadlock
            )
            latest = dict(
                (await session.execute(select(Digest.widget_id, func.max(Digest.period_end)).group_by(Digest.widget_id))).all()
            )
            due: list[tuple[int, datetime]] = []
            for widget, row in rows:
                values = values_of(row)
                at = last_due_at(digest_schedule(widget, values), now)
                if at is None or at <= widget.created_at:
                    continue  # no period ended since the widget exists: nothing can be in one
                if latest.get(widget.id) is None or latest[widget.id] < at:
                    due.append((widget.id, at))
        return due

    async def run_once(self) -> list[Digest]:
        """Send every digest due now; returns those this call wrote."""
        now = self.clock()

        async def send(session: AsyncSession, due: tuple[int, datetime]) -> Digest | None:
            widget_id, at = due
            widget = await session.get(Widget, widget_id)
            if widget is None:
                return None
            values = values_of(await session.get(WidgetNotifySettings, widget_id))
            return await send_digest(session, widget, values, at)

        def failed(due: tuple[int, datetime], exc: Exception) -> None:
            if not isinstance(exc, IntegrityError):  # lost the race at commit time (PostgreSQL): the other worker sent it
                log.exception("digest for widget %s failed; the next run tries again", due[0])

        sent = [digest for _, digest in await write_each(self.db, await self._due(now), send, failed) if digest is not None]
        if any(d.message_count for d in sent) and self.on_enqueued is not None:
            self.on_enqueued()
        return sent

