"""Background writes for many items (widgets, mostly), several to a transaction.

The worker's minute jobs look at every widget and write for those whose
status changed or whose digest is due. One transaction per widget made a
burst of commits whenever many widgets changed together: each new widget's
first status, every widget's first digest, a schedule closing for all of
them at five. With ``deskbell run`` on SQLite each commit is an fsync and a
hold of the write lock that visitors' acks queue behind (600 widgets: 1,200
commits at the minute after they were created).

:func:`write_each` shares a transaction among up to :data:`SHARE_MAX`
items; on SQLite also only until it has run for :data:`SHARE_S`, so a
visitor's line never waits behind more than a few milliseconds of background
work (on PostgreSQL nobody waits for it: it locks only the rows it writes). If a shared
transaction fails, each of its items is written again alone, so one bad item
fails only itself, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database

log = logging.getLogger(__name__)

I = TypeVar("I")
R = TypeVar("R")

SHARE_S = 0.005  # SQLite: a shared transaction takes no more items once it has run this long
SHARE_MAX = 100


async def write_each(
    db: Database,
    items: Sequence[I],
    fn: Callable[[AsyncSession, I], Awaitable[R]],
    on_error: Callable[[I, Exception], None],
) -> list[tuple[I, R]]:
    """``fn(session, item)`` for each item, in order, several per write transaction.

    Returns (item, result) for the items committed. An item whose write fails
    alone is handed to ``on_error`` and left out. ``fn`` may run twice for an
    item (alone, after its shared transaction failed): it must decide
    everything inside the call.
    """
    done: list[tuple[I, R]] = []
    start = 0
    sqlite = db.is_sqlite
    while start < len(items):
        shared: list[tuple[I, R]] = []
        tried = 0
        try:
            async with db.write() as session:
                began = time.monotonic()
                for item in items[start : start + SHARE_MAX]:
                    tried += 1
                    shared.append((item, await fn(session, item)))
                    if sqlite and time.monotonic() - began >= SHARE_S:
                        break
        except Exception:
            tried = max(tried, 1)  # the transaction did not even begin: on alone, one by one
            log.debug("a write shared by %d items failed; each is written again alone", tried, exc_info=True)
            done += await _alone(db, items[start : start + tried], fn, on_error)
            start += tried
        else:
            done += shared
            start += tried
    return done


async def _alone(
    db: Database, items: Sequence[I], fn: Callable[[AsyncSession, I], Awaitable[R]], on_error: Callable[[I, Exception], None]
) -> list[tuple[I, R]]:
    done: list[tuple[I, R]] = []
    for item in items:
        try:
            async with db.write() as session:
                result = await fn(session, item)
        except Exception as exc:
            on_error(item, exc)
        else:
            done.append((item, result))
    return done
