"""Offline-form submissions stored alone or together: the form's writes for group commit.

A submission is its message row plus the deliveries it owes (core/deliveries.py),
committed together. When many visitors submit at once their writes share a
transaction (core/group_commit.py), and :func:`store_submissions` is the bulk
form: one ``INSERT ... RETURNING`` for every message of the batch (one
statement on PostgreSQL; on SQLite one SQLAlchemy call whose rows are
inserted one by one in-process), then each one's deliveries planned.

The team's emails, the usual delivery, go in a second INSERT for the whole
batch, as plain columns: flushed as ORM rows, a row at a time before each
next statement (SQLAlchemy's autoflush), they were a third of the web
process's CPU at the form's top rate, and flushed once at the COMMIT the
unit of work still cost a fifth of it at 500 submissions/s. Other
deliveries (webhooks, channel posts, pushes) stay ORM rows, flushed once at
the COMMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.deliveries import plan_offline_message
from core.models import OfflineMessage, Widget
from core.offline import add_offline_messages
from core.outbox import insert_rows

Submission = tuple[Widget, dict[str, Any]]  # the widget and the cleaned fields (``clean_submission``)


async def store_submission(session: AsyncSession, widget: Widget, fields: dict[str, Any]) -> tuple[OfflineMessage, int]:
    """One submission and its deliveries; returns the row and how many deliveries it owes.

    The bulk form with one submission, so a submission retried alone (its batch
    failed) is written exactly as in a batch.
    """
    (answer,) = await store_submissions(session, [(widget, fields)])
    return answer


async def store_submissions(session: AsyncSession, submissions: Sequence[Submission]) -> list[tuple[OfflineMessage, int]]:
    """Several submissions and their deliveries, the messages in one INSERT and their emails in
    another; answers in order."""
    emails: list[dict[str, Any]] = []
    with session.no_autoflush:
        rows = await add_offline_messages(session, submissions)
        planned = [await plan_offline_message(session, widget, row, emails=emails) for (widget, _), row in zip(submissions, rows)]
        await insert_rows(session, emails)
    return list(zip(rows, planned))
