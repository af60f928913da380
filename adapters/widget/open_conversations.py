"""Where returning visitors left off: their open conversation, read many at a time.

After a restart every widget comes back within a few seconds and each
needs one read (its open conversation and the last ``seq``). Read one by
one, 10,000 hellos cost 10,000 pooled connections, transactions and driver
round trips, and as many concurrent reads queue inside the connection pool,
where they time out instead of waiting their turn.

Here lookups wait in asyncio and are answered in batches: one statement for
every hello waiting (up to ``batch_size``), one batch at a time, on one
pooled connection kept while hellos keep coming (given back when none
waits). A lone hello is read at once (after one turn of the loop, to pick
up the hellos that arrived with it), so a quiet server adds no delay.

The statement goes to the driver directly (aiosqlite's ``execute_fetchall``,
asyncpg's ``fetch``): one round trip per batch. While thousands of
handshakes are being served, one turn of the event loop takes 100 ms or
more, and every round trip waits for a turn; through a pooled SQLAlchemy
connection a read is ~9 round trips (checkout, BEGIN, cursor, execute,
fetch, close, rollback...), and in a 3,000-widget storm a read of 18 rows
took 4.7 s that way while the hellos piled up behind it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import Database
from core.models import Conversation

log = logging.getLogger(__name__)

Key = tuple[int, str]  # (widget id, visitor id)
_TABLE = Conversation.__table__.name
_COLUMNS = "id, widget_id, visitor_id, last_seq"
# SQLite binds each id as its own parameter: before 3.32 a statement takes at most 999.
_SQLITE_BATCH = 5000 if sqlite3.sqlite_version_info >= (3, 32) else 490
_PG_BATCH = 5000  # two array parameters, whatever the size
_PG_QUERY = (
    f"SELECT {_COLUMNS} FROM {_TABLE} WHERE status = 'open'"
    " AND widget_id = ANY($1::bigint[]) AND visitor_id = ANY($2::text[])"
)


@dataclass(frozen=True, slots=True)
class OpenConversation:
    id: int
    widget_id: int
    last_seq: int


class OpenConversations:
    def __init__(self, db: Database, *, batch_size: int | None = None) -> None:
        self.db = db
        self.batch_size = batch_size or (_SQLITE_BATCH if db.is_sqlite else _PG_BATCH)
        self._waiting: dict[Key, list[asyncio.Future[OpenConversation | None]]] = {}
        self._running: asyncio.Task[None] | None = None
        self._start_scheduled = False
        self._conn: AsyncConnection | None = None  # one pooled connection, kept while hellos come
        self._closed = False
        self.queries = 0  # batches read, for tests and measurements

    async def get(self, widget_id: int, visitor_id: str) -> OpenConversation | None:
        """The visitor's open conversation on this widget (the newest), or None.

        Read after this call started: a conversation committed before it is seen.
        Raises what the database raised (every visitor of that batch gets it).
        """
        if self._closed:
            raise RuntimeError("shutting down")
        future: asyncio.Future[OpenConversation | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((widget_id, visitor_id), []).append(future)
        self._schedule()
        return await future

    async def close(self) -> None:
        """No more lookups (shutting down); the connection is back in the pool when this returns."""
        self._closed = True
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - the pool replaces a connection it cannot reset
                log.debug("giving the lookup connection back failed", exc_info=True)

    def _schedule(self) -> None:
        if self._start_scheduled or not self._waiting or self._running is not None:
            return
        self._start_scheduled = True
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._start_scheduled = False
        if self._running is not None or not self._waiting:
            return
        keys = list(self._waiting)[: self.batch_size]
        batch = {key: self._waiting.pop(key) for key in keys}
        self._running = asyncio.get_running_loop().create_task(self._read(batch), name="open-conversations")
        self._running.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._running = None
        self._schedule()

    async def _read(self, batch: dict[Key, list[asyncio.Future[OpenConversation | None]]]) -> None:
        try:
            found = await self._query(list(batch))
        except Exception as exc:  # every waiter of the batch gets the failure
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        except BaseException:  # cancelled: no waiter waits forever
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        for key, futures in batch.items():
            for future in futures:
                if not future.done():  # a waiter whose socket went away meanwhile is cancelled
                    future.set_result(found.get(key))
        if not self._waiting:  # quiet again: the pool gets the connection back
            await self._release()

    async def _query(self, keys: list[Key]) -> dict[Key, OpenConversation]:
        self.queries += 1
        if self._conn is None:
            self._conn = await self.db.engine.connect()
        try:
            driver: Any = (await self._conn.get_raw_connection()).driver_connection
            widget_ids = sorted({widget_id for widget_id, _ in keys})
            visitor_ids = sorted({visitor_id for _, visitor_id in keys})
            if self.db.is_sqlite:  # aiosqlite: execute + fetch in one trip to its thread
                query = (
                    f"SELECT {_COLUMNS} FROM {_TABLE} WHERE status = 'open'"
                    f" AND widget_id IN ({', '.join('?' * len(widget_ids))})"
                    f" AND visitor_id IN ({', '.join('?' * len(visitor_ids))})"
                )
                rows = await driver.execute_fetchall(query, [*widget_ids, *visitor_ids])
            else:  # asyncpg: a prepared statement, cached on the connection
                rows = await driver.fetch(_PG_QUERY, widget_ids, visitor_ids)
        except BaseException:
            conn, self._conn = self._conn, None
            try:  # a broken connection is not given back to the pool as it is
                await conn.invalidate()
                await conn.close()
            except Exception:  # noqa: BLE001 - the query's own error is the one to report
                log.debug("closing the lookup connection failed", exc_info=True)
            raise
        wanted = set(keys)
        found: dict[Key, OpenConversation] = {}
        for conv_id, widget_id, visitor_id, last_seq in rows:
            key = (widget_id, visitor_id)
            if key in wanted and (key not in found or conv_id > found[key].id):  # the newest, as current_conversation
                found[key] = OpenConversation(conv_id, widget_id, last_seq)
        return found
