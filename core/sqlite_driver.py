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

The write lock and the COMMIT stay on the loop's thread too:

* ``BEGIN IMMEDIATE`` is tried at once; while another process holds the
  write lock it is tried again every 0.5-2 ms from the loop (asyncio sleeps
  in between), bounded by the connection's ``busy_timeout``. Waiting in a
  thread instead cost a turn of the event loop between the thread getting
  the lock and the transaction starting, and the other process waited for
  that turn, lock held.
* ``COMMIT`` of a write transaction runs inline: it appends to the WAL and
  fsyncs it (0.3 ms here). In a thread, the answer waited for the event loop
  and the GIL, 2-4 ms under the relay benchmark's load, the write lock held
  all along. What made a commit slow now and then, the automatic WAL
  checkpoint, is off on these connections: :class:`Checkpointer` runs a
  passive checkpoint in a thread every :data:`CHECKPOINT_EVERY_COMMITS`
  commits or :data:`CHECKPOINT_EVERY_S` seconds instead.

Only what has to wait for the disk outside a write transaction goes to a
thread: writes outside a write transaction, PRAGMAs, opening the file.

Used through ``create_async_engine(url, async_creator=...)`` (see
core/db.py); the URL keeps the ``sqlite+aiosqlite`` dialect, so SQLAlchemy
compiles and adapts exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["Checkpointer", "InlineConnection", "connect"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Statements that may block (lock waits, fsync) run here. A few threads: each
# call holds one only while its own statement runs.
_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite")

# Waiting for another process's write lock: try again after this long, doubling up to the
# maximum, until the connection's busy_timeout has passed.
LOCK_RETRY_FIRST_S = 0.0005
LOCK_RETRY_MAX_S = 0.002

# Passive WAL checkpoints (see Checkpointer): after this many commits, or when this long
# has passed since the last one at the next commit.
CHECKPOINT_EVERY_COMMITS = 100
CHECKPOINT_EVERY_S = 1.0

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


def _write_lock_now(raw: sqlite3.Connection, execute: Callable[..., T], *args: Any, last: bool = False) -> T | object:
    """``BEGIN IMMEDIATE`` if the write lock is free this instant, else _BUSY (or, ``last``, SQLite's error).

    Run on the loop's thread: the lock is held from here to COMMIT without
    waiting for a turn of a busy event loop in between.
    """
    with _no_busy_handler(raw):
        try:
            return execute(*args)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and not last:
                return _BUSY
            raise


def _busy_timeout_s(raw: sqlite3.Connection) -> float:
    return int(raw.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000


class Checkpointer:
    """Copies the WAL back into the database file, in a thread, for the connections of one file.

    Our connections commit on the event loop's thread with SQLite's automatic
    checkpoint off (a commit that crossed its 1,000-page mark checkpointed
    there and then: 3 ms and more). A passive checkpoint waits for no reader
    or writer; it runs on its own connection, one at a time, after
    :data:`CHECKPOINT_EVERY_COMMITS` commits or :data:`CHECKPOINT_EVERY_S`.
    """

    def __init__(self, database: str, *, uri: bool) -> None:
        self.database = database
        self.uri = uri
        self.users = 0
        self.runs = 0  # checkpoints started (tests look at it)
        self._commits = 0
        self._last = time.monotonic()
        self._running: Future[None] | None = None
        self._raw: sqlite3.Connection | None = None

    def committed(self) -> None:
        """Note a commit; start a checkpoint if one is due and none runs."""
        self._commits += 1
        if self._running is not None and not self._running.done():
            return
        if self._commits < CHECKPOINT_EVERY_COMMITS and time.monotonic() - self._last < CHECKPOINT_EVERY_S:
            return
        self._commits, self._last = 0, time.monotonic()
        self.runs += 1
        self._running = _EXECUTOR.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._raw is None:
                self._raw = sqlite3.connect(self.database, uri=self.uri, isolation_level=None, check_same_thread=False)
            self._raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next commit tries again; nothing is lost meanwhile
            log.warning("WAL checkpoint of %s failed: %s", self.database, exc)

    def close(self) -> None:
        """Close its connection once a running checkpoint has returned."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        running = self._running
        if running is not None and not running.done():
            running.add_done_callback(lambda _: raw.close())
        else:
            raw.close()


_CHECKPOINTERS: dict[tuple[str, bool], Checkpointer] = {}
_CHECKPOINTERS_LOCK = threading.Lock()


def _on_disk(database: str, uri: bool) -> bool:
    if database in ("", ":memory:"):
        return False
    return not (uri and "mode=memory" in database)


def _checkpointer_for(database: str, uri: bool) -> Checkpointer:
    with _CHECKPOINTERS_LOCK:
        checkpointer = _CHECKPOINTERS.get((database, uri))
        if checkpointer is None:
            checkpointer = _CHECKPOINTERS[(database, uri)] = Checkpointer(database, uri=uri)
        checkpointer.users += 1
        return checkpointer


def _release_checkpointer(checkpointer: Checkpointer) -> None:
    with _CHECKPOINTERS_LOCK:
        checkpointer.users -= 1
        if checkpointer.users > 0:
            return
        _CHECKPOINTERS.pop((checkpointer.database, checkpointer.uri), None)
    checkpointer.close()


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

    def __init__(self, raw: sqlite3.Connection, checkpointer: Checkpointer | None = None) -> None:
        self.raw = raw
        self.checkpointer = checkpointer  # None: SQLite checkpoints on its own (in memory, tests)
        self._writing = False  # inside BEGIN IMMEDIATE: this connection holds the write lock
        # The call running in a thread, if any. Its caller may have been cancelled
        # (a timeout, a shutdown) while SQLite still works on it; nothing else may
        # touch the connection until it returns: sqlite3 crashes on a close racing a step.
        self._in_thread: Future[Any] | None = None
        self.offloaded = 0  # statements sent to a thread (tests look at it)
        self.inline = 0
        self.lock_waits = 0  # BEGIN IMMEDIATE found another process holding the write lock

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
            return not self._writing  # COMMIT of a write transaction: the WAL's fsync, inline
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

    async def _begin_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``BEGIN IMMEDIATE``: at once if the lock is free, else tried again every few ms from the loop."""
        await self._settled()
        result = _write_lock_now(self.raw, fn, *args)
        if result is not _BUSY:
            return result  # type: ignore[return-value]
        self.lock_waits += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _busy_timeout_s(self.raw)
        pause = LOCK_RETRY_FIRST_S
        while True:
            await asyncio.sleep(pause)
            result = _write_lock_now(self.raw, fn, *args, last=loop.time() >= deadline)
            if result is not _BUSY:
                return result  # type: ignore[return-value]
            pause = min(pause * 2, LOCK_RETRY_MAX_S)

    async def run(self, sql: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` for statement ``sql``: inline, or in a thread if it may wait."""
        head = _head(sql)
        if head.startswith(_WRITE_BEGINS) and not self._writing:
            self.inline += 1
            result = await self._begin_write(fn, *args)
        elif self._may_wait(sql):
            result = await self._in_executor(fn, *args)
        else:
            await self._settled()
            self.inline += 1
            result = fn(*args)
        if head.startswith(_WRITE_BEGINS):
            self._writing = True
        elif head.startswith(_ENDS) or not self.raw.in_transaction:
            self._writing = False
        return result

    @property
    def writing(self) -> bool:
        """Inside this connection's write transaction (BEGIN IMMEDIATE ran, no COMMIT or ROLLBACK yet)."""
        return self._writing and self.raw.in_transaction

    def run_now(self, sql: str, parameters: Sequence[Any]) -> sqlite3.Cursor:
        """A statement of the write transaction, run at once: what ``run`` does for it, without the await."""
        self._check_writing()
        self.inline += 1
        return self.raw.execute(sql, parameters)

    def run_many_now(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``run_now`` for each of ``rows`` (an INSERT of many rows)."""
        self._check_writing()
        self.inline += 1
        self.raw.executemany(sql, rows)

    def _check_writing(self) -> None:
        if not self.writing or (self._in_thread is not None and not self._in_thread.done()):
            raise RuntimeError("run_now is for statements of this connection's write transaction")

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
        """COMMIT: inline for a write transaction (see the module docstring), else in a thread."""
        try:
            if self._writing:
                await self._settled()
                self.inline += 1
                self.raw.commit()
            else:
                await self._in_executor(self.raw.commit)
        finally:
            self._writing = self._writing and self.raw.in_transaction
        if self.checkpointer is not None:
            self.checkpointer.committed()

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
            self._forget_checkpointer()

    def _forget_checkpointer(self) -> None:
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            _release_checkpointer(checkpointer)

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
        self._forget_checkpointer()


async def connect(database: str, *, uri: bool = False, timeout: float = 10.0) -> InlineConnection:
    """Open ``database`` (a path or ``:memory:``) in autocommit mode: SQLAlchemy emits BEGIN itself.

    A file database gets its WAL checkpoints from a :class:`Checkpointer`
    (SQLite's automatic ones are turned off on this connection).
    """
    on_disk = _on_disk(database, uri)

    def open_() -> sqlite3.Connection:
        raw = sqlite3.connect(database, uri=uri, timeout=timeout, isolation_level=None, check_same_thread=False)
        if on_disk:
            raw.execute("PRAGMA wal_autocheckpoint = 0")
        return raw

    raw = await asyncio.wrap_future(_EXECUTOR.submit(open_))
    return InlineConnection(raw, _checkpointer_for(database, uri) if on_disk else None)
