"""SQLite for asyncio without a thread trip per statement.

SQLAlchemy's ``sqlite+aiosqlite`` dialect sends every cursor operation
(cursor, execute, fetch, close) to aiosqlite's thread and waits for the event
loop to hear back: about 150 µs of CPU and a loop iteration per statement,
for statements that take SQLite itself 10-20 µs. Under load those trips, not
SQLite, were most of the cost of a chat line, and a transaction held the
process's write lock for as many loop iterations as it had statements.

:class:`InlineConnection` speaks the part of aiosqlite's interface that the
dialect uses, and runs a statement on the loop's own thread when it cannot
wait for anything:

* statements inside a write transaction that already holds SQLite's write
  lock (after ``BEGIN IMMEDIATE``): nothing else can lock them out;
* ``SELECT`` and deferred ``BEGIN``/``ROLLBACK``: in WAL mode readers take no
  lock that a writer holds.

What can wait goes to a thread, so the loop never sleeps on another
process's lock or on the disk: ``BEGIN IMMEDIATE`` while another process
holds the write lock (taken at once on the loop's thread when it is free;
see :func:`_write_lock_now` and :func:`_take_write_lock`), ``COMMIT`` (fsync, and now and then a WAL checkpoint),
writes outside a write transaction, PRAGMAs, and opening the file.

Used through ``create_async_engine(url, async_creator=...)`` (see
core/db.py); the URL keeps the ``sqlite+aiosqlite`` dialect, so SQLAlchemy
compiles and adapts exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["InlineConnection", "connect"]

T = TypeVar("T")

# Statements that may block (lock waits, fsync) run here. A few threads: each
# call holds one only while its own statement runs.
_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite")

# Waiting for another process's write lock: try again after this long, doubling up to the
# maximum, until the connection's busy_timeout has passed.
LOCK_RETRY_FIRST_S = 0.0002
LOCK_RETRY_MAX_S = 0.002

_READ_HEADS = ("SELECT", "BEGIN", "ROLLBACK", "SAVEPOINT", "RELEASE")
_WRITE_BEGINS = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")
_ENDS = ("COMMIT", "END", "ROLLBACK")


def _head(sql: str) -> str:
    return " ".join(sql.lstrip()[:24].upper().split())


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF == sqlite3.SQLITE_BUSY


@contextlib.contextmanager
def _no_busy_handler(raw: sqlite3.Connection) -> Iterator[float]:
    """SQLite's busy handler off for a moment; yields the connection's busy_timeout in seconds."""
    timeout_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        yield timeout_ms / 1000
    finally:
        raw.execute(f"PRAGMA busy_timeout = {timeout_ms}")


_BUSY = object()


def _write_lock_now(raw: sqlite3.Connection, execute: Callable[..., T], *args: Any) -> T | object:
    """``BEGIN IMMEDIATE`` if the write lock is free this instant (run on the loop's thread), else _BUSY.

    Taken on the loop's thread, the lock is held from here to COMMIT without
    waiting for a turn of a busy event loop in between (a thread's answer
    does); only a lock another process holds sends the wait to a thread.
    """
    with _no_busy_handler(raw):
        try:
            return execute(*args)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return _BUSY
            raise


def _take_write_lock(raw: sqlite3.Connection, execute: Callable[..., T], *args: Any) -> T:
    """``BEGIN IMMEDIATE`` (``execute(*args)``) in a thread, waiting for the write lock in small steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50,
    100 ms between tries: a writer that has waited a few milliseconds then
    oversleeps a lock freed long before by tens of milliseconds. With the web
    process and the worker writing to one file, that, not the work, was the
    p99 of a visitor's ack (bench/RESULTS.md). Here the connection's
    busy_timeout still bounds the wait, tried every 0.2-2 ms.
    """
    with _no_busy_handler(raw) as timeout_s:
        deadline = time.monotonic() + timeout_s
        pause = LOCK_RETRY_FIRST_S
        while True:
            try:
                return execute(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LOCK_RETRY_MAX_S)


class InlineCursor:
    """One sqlite3 cursor; the ``async`` methods are those aiosqlite's cursor has."""

    __slots__ = ("_conn", "_cursor")

    def __init__(self, conn: InlineConnection) -> None:
        self._conn = conn
        self._cursor = conn.raw.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        await self._conn.run(sql, self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, rows: Iterable[Any]) -> InlineCursor:
        await self._conn.run(sql, self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def close(self) -> None:
        await self._conn._settled()
        self._cursor.close()


class InlineConnection:
    """A sqlite3 connection driven from the event loop; see the module docstring."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self._writing = False  # inside BEGIN IMMEDIATE: this connection holds the write lock
        # The call running in a thread, if any. Its caller may have been cancelled
        # (a timeout, a shutdown) while SQLite still works on it; nothing else may
        # touch the connection until it returns: sqlite3 crashes on a close racing a step.
        self._in_thread: Future[Any] | None = None
        self.offloaded = 0  # statements sent to a thread (tests look at it)
        self.inline = 0

    # aiosqlite exposes the sqlite3 connection as ``_connection`` (None once closed);
    # SQLAlchemy's adapter checks it before commit and rollback.
    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self.raw if self._open else None

    _open = True

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    @property
    def total_changes(self) -> int:
        return self.raw.total_changes

    def _may_wait(self, sql: str) -> bool:
        head = _head(sql)
        if head.startswith(_ENDS) and not head.startswith("ROLLBACK"):
            return True  # COMMIT: fsync
        if self._writing:
            return False
        if head.startswith(_WRITE_BEGINS):
            return True
        return not head.startswith(_READ_HEADS)

    async def _settled(self) -> None:
        """Wait until no call of an earlier (cancelled) caller still runs in a thread."""
        running = self._in_thread
        if running is not None and not running.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(asyncio.wrap_future(running))

    async def _in_executor(self, fn: Callable[..., T], *args: Any) -> T:
        await self._settled()
        self.offloaded += 1
        self._in_thread = _EXECUTOR.submit(fn, *args)
        return await asyncio.wrap_future(self._in_thread)

    async def run(self, sql: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` for statement ``sql``: inline, or in a thread if it may wait."""
        if _head(sql).startswith(_WRITE_BEGINS) and not self._writing:
            await self._settled()
            result = _write_lock_now(self.raw, fn, *args)
            if result is _BUSY:
                result = await self._in_executor(_take_write_lock, self.raw, fn, *args)
            else:
                self.inline += 1
        elif self._may_wait(sql):
            result = await self._in_executor(fn, *args)
        else:
            await self._settled()
            self.inline += 1
            result = fn(*args)
        head = _head(sql)
        if head.startswith(_WRITE_BEGINS):
            self._writing = True
        elif head.startswith(_ENDS) or not self.raw.in_transaction:
            self._writing = False
        return result

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        cursor = InlineCursor(self)
        return await cursor.execute(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        cursor = await self.execute(sql, parameters)
        try:
            return cursor._cursor.fetchall()
        finally:
            cursor._cursor.close()

    async def commit(self) -> None:
        try:
            await self._in_executor(self.raw.commit)
        finally:
            self._writing = self._writing and self.raw.in_transaction

    async def rollback(self) -> None:
        await self._settled()
        try:
            self.raw.rollback()
        finally:
            self._writing = False

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self._settled()
        self.raw.create_function(*args, **kwargs)

    async def close(self) -> None:
        await self._settled()
        if self._open:
            self._open = False
            self.raw.close()

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's forced terminate): after the call in a thread, if any."""
        if not self._open:
            return
        self._open = False
        running = self._in_thread
        if running is not None and not running.done():
            running.add_done_callback(lambda _: self.raw.close())
        else:
            self.raw.close()


async def connect(database: str, *, uri: bool = False, timeout: float = 10.0) -> InlineConnection:
    """Open ``database`` (a path or ``:memory:``) in autocommit mode: SQLAlchemy emits BEGIN itself."""

    def open_() -> sqlite3.Connection:
        return sqlite3.connect(database, uri=uri, timeout=timeout, isolation_level=None, check_same_thread=False)

    raw = await asyncio.wrap_future(_EXECUTOR.submit(open_))
    return InlineConnection(raw)
