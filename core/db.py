"""Database access: engines, sessions and the write path.

Writes go through :meth:`Database.write`, one transaction per domain change.
On SQLite, writes in this process are serialized and start with
``BEGIN IMMEDIATE`` so a read-then-write transaction never fails with
"database is locked" half way; readers use a separate engine and, thanks to
WAL, never wait for writers. Small writes on a visitor's critical path (a
chat line, an offline form) use :meth:`Database.write_batched` instead: a
group commit (core/group_commit.py) shares one transaction, and so the
lock, BEGIN, COMMIT and fsync, among the writes queued meanwhile.

SQLite runs with ``synchronous=FULL``, kept on purpose: the contracts say an
acknowledged message or a 201 for an offline form is durable, and in WAL
mode ``NORMAL`` can lose the last commits on a power cut or OS crash (not on
a process crash). With group commit the fsync is paid once per batch, not
once per message, so FULL costs little where it matters.

SQLite connections come from core/sqlite_driver.py: statements run on the
loop's thread where they cannot wait long (reads, a write transaction's
statements and its COMMIT), not with aiosqlite's thread trip for every
cursor operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.elements import TextClause

from core import sqlite_driver
from core.driver_sql import LISTENERS as DRIVER_LISTENERS
from core.driver_sql import DriverStatement
from core.destinations import INFO_KEY as DESTINATIONS
from core.destinations import DestinationCache

if TYPE_CHECKING:
    from core.group_commit import Bulk, GroupCommitter

T = TypeVar("T")
DEFAULT_URL = "sqlite+aiosqlite:///./deskbell.db"

# A pooled PostgreSQL connection idle this long is checked before use (see _ping_when_idle).
PING_AFTER_IDLE_S = 5.0
PG_POOL_KEPT = 24
_RETURNED_AT = "deskbell_returned_at"

# SQLite reader connections kept open per process, and opened beyond that under a burst.
SQLITE_READERS_KEPT = 64
SQLITE_READERS_EXTRA = 64


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used; the message says why."""


def normalize_url(url: str) -> str:
    """Accept the URL forms operators paste and map them to async drivers."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql+asyncpg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    elif url.startswith("sqlite:///") or url.startswith("sqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"{url!r} is not a database URL") from exc
    if parsed.drivername not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        raise DatabaseUrlError(
            f"unsupported database {parsed.drivername!r}; use sqlite:///FILE or postgresql://..."
        )
    return url


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn.isolation_level is not None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_creator(url: str) -> Callable[[], Awaitable[Any]]:
    """Connections for the SQLite engines: core/sqlite_driver.py (no thread trip per statement)."""
    parsed = make_url(url)
    database = parsed.database or ":memory:"
    uri = str(parsed.query.get("uri", "")).lower() in ("1", "true")

    async def create() -> Any:
        return await sqlite_driver.connect(database, uri=uri)

    return create


# Array types the bulk statements bind (core/line_batches.py, core/bulk_sql.py) that asyncpg
# has no built-in codec for: it looks each up with a recursive catalogue query on a
# connection's first statement using it, 4-20 ms (PostgreSQL's log), and every connection
# did so at the first burst of visitors (28 lookups in the relay benchmark's first second).
_LOOKED_UP_ARRAYS = (
    "SELECT CAST(NULL AS BIGINT[]), CAST(NULL AS BOOLEAN[]), CAST(NULL AS INTEGER[]),"
    " CAST(NULL AS VARCHAR[]), CAST(NULL AS TIMESTAMP WITH TIME ZONE[])"
)


def _learn_types_on_connect(engine: AsyncEngine) -> None:
    """Have each new PostgreSQL connection look those types up as it opens, not in a
    visitor's write (with :meth:`Database.fill_pool`, before the process serves)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(_LOOKED_UP_ARRAYS)
            cursor.fetchall()
        finally:
            cursor.close()
            # The cursor began a transaction; a connection goes to the pool with none open
            # (a driver statement run on it would otherwise be rolled back at its checkin).
            dbapi_conn.rollback()


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled PostgreSQL connection before use only if it sat idle for a while.

    ``pool_pre_ping`` checks on every checkout: BEGIN, a query and ROLLBACK,
    three round trips before each read, 10 % of a busy worker's CPU. A
    connection used a moment ago is alive; one idle for
    :data:`PING_AFTER_IDLE_S` may have been dropped by a restart or a
    firewall, and is replaced before anyone gets it (raising
    ``DisconnectionError`` makes the pool take or open another). A connection
    dropped while busy, or within that time of its last use (a database
    restart under load), fails its next statement; SQLAlchemy then drops the
    pool's other connections opened before it. Group commits run that write
    again alone and deliveries are retried, so nothing is lost.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its check: {exc}") from exc


class WriteLock:
    """The SQLite write lock of this process, with a fast lane for visitors.

    Like ``asyncio.Lock`` (FIFO), except that an ``urgent`` waiter (a group
    commit of visitor lines and forms, someone waiting for an ack) is let in
    before normal waiters (the worker's bookkeeping) — but never twice in a
    row while a normal waiter waits, so background work cannot starve.
    """

    def __init__(self) -> None:
        self._locked = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()
        self._last_urgent = False

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, *, urgent: bool = False) -> None:
        if not self._locked and not self._urgent and not self._normal:
            self._locked, self._last_urgent = True, urgent
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed the lock just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    (self._urgent if urgent else self._normal).remove(future)
            raise
        self._last_urgent = urgent

    def release(self) -> None:
        order = (self._normal, self._urgent) if self._last_urgent else (self._urgent, self._normal)
        for waiters in order:
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)  # handed over: stays locked
                    return
        self._locked = False


class Database:
    """Engines and sessions for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        try:
            if self.is_sqlite:
                creator = _sqlite_creator(self.url)
                # Readers: a worker reads in up to 64 deliveries at once. With SQLAlchemy's default
                # (5 kept, 10 more opened and closed as needed) it opened ~90 connections a
                # second under the relay benchmark (the file and four PRAGMAs, each a thread
                # trip). A connection costs little until it caches pages; 64 are kept.
                self.engine = create_async_engine(
                    self.url, echo=echo, pool_size=SQLITE_READERS_KEPT, max_overflow=SQLITE_READERS_EXTRA,
                    async_creator=creator,
                )
                self._write_engine = create_async_engine(
                    self.url, echo=echo, pool_size=1, max_overflow=0, async_creator=creator
                )
                _sqlite_pragmas(self.engine, immediate=False)
                _sqlite_pragmas(self._write_engine, immediate=True)
                self._read_engine = self.engine
            else:
                # A worker runs up to 32 deliveries at once besides its claims and grouped
                # writes: a pool of 10 left it opening and closing overflow connections under
                # load (5 % of its CPU in connect), and so did 16 kept + 8 overflow in the
                # relay benchmark's opening burst (10 % of the worker's samples in connect and
                # close, and a PostgreSQL backend started for each). All 24 are kept: two
                # web processes and a worker stay within PostgreSQL's default 100.
                self.engine = create_async_engine(self.url, echo=echo, pool_size=PG_POOL_KEPT, max_overflow=0)
                _ping_when_idle(self.engine)
                _learn_types_on_connect(self.engine)
                self._write_engine = self.engine
                # Reads need no transaction: under READ COMMITTED every statement sees its own
                # snapshot anyway, and BEGIN and ROLLBACK were two of a read's three round trips.
                self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        except (ArgumentError, NoSuchModuleError) as exc:
            raise DatabaseUrlError(str(exc)) from exc
        # Destinations of each widget, cached for delivery planning (core/destinations.py);
        # sessions carry it so planning code finds it and commits can drop stale entries.
        self.destinations = DestinationCache()
        # Called with the SQL of each statement run past SQLAlchemy (core/driver_sql.py), as
        # its cursor events are for the rest (tests count statements with both).
        self.driver_listeners: list[Callable[[str, int], None]] = []
        info = {DESTINATIONS: self.destinations, DRIVER_LISTENERS: self.driver_listeners}
        self._reader = async_sessionmaker(self._read_engine, expire_on_commit=False, info=info)
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False, info=info)
        self._write_lock = WriteLock() if self.is_sqlite else None
        self._group: GroupCommitter | None = None
        self._driver_statements: dict[TextClause, DriverStatement] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries only. Never write through it: on PostgreSQL it runs
        without a transaction (each statement on its own), so a write would not wait
        for a commit, and could not be rolled back."""
        async with self._reader() as session:
            yield session

    def driver_statement(self, statement: TextClause) -> DriverStatement:
        """PostgreSQL: ``statement`` as run by the driver itself, outside any transaction (it
        commits on its own), for a hot write that is one statement: no BEGIN and COMMIT round
        trips around it, and none of SQLAlchemy's per-call layers (core/driver_sql.py)."""
        if self.is_sqlite:
            raise RuntimeError("driver statements are for PostgreSQL; SQLite writes go through write()")
        found = self._driver_statements.get(statement)
        if found is None:
            found = self._driver_statements[statement] = DriverStatement(statement, self._read_engine, self.driver_listeners)
        return found

    @asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back on error.

        ``urgent``: someone is waiting for this commit (on SQLite it goes
        ahead of queued background writes; see :class:`WriteLock`).
        """
        if self._write_lock is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        await self._write_lock.acquire(urgent=urgent)
        try:
            async with self._writer() as session, session.begin():
                yield session
        finally:
            self._write_lock.release()

    async def write_batched(
        self,
        fn: Callable[[AsyncSession], Awaitable[T]],
        *,
        key: Hashable | None = None,
        bulk: Bulk[T] | None = None,
        background: bool = False,
    ) -> T:
        """Run ``fn(session)`` in a transaction shared with other writes queued meanwhile
        (group commit, core/group_commit.py); returns its result once committed.

        For small, frequent writes on a visitor's critical path. ``fn`` may run
        twice (alone, after a batch it was in failed), so it must create what
        it adds inside the call; writes with the same ``key`` keep their order.
        ``bulk`` offers the write's bulk form (see core/group_commit.py).
        ``background``: nobody waits on it (the worker's bookkeeping); it does not
        share a batch with writes someone waits on unless it was held back already.
        """
        if self._group is None:
            from core.group_commit import GroupCommitter

            self._group = GroupCommitter(self)
        return await self._group.submit(fn, key=key, bulk=bulk, background=background)

    @property
    def group_commit(self) -> GroupCommitter | None:
        return self._group

    async def fill_pool(self) -> None:
        """PostgreSQL: open the pool's kept connections now, all at once.

        Opened on demand, they are opened by the first burst of visitors, whose
        lines wait for each connect, login and type look-up (see
        :data:`_LOOKED_UP_ARRAYS`). A failure here is left for the first query
        to report."""
        if self.is_sqlite:
            return
        opened = await asyncio.gather(*(self.engine.connect() for _ in range(PG_POOL_KEPT)), return_exceptions=True)
        for conn in opened:
            if not isinstance(conn, BaseException):
                await conn.close()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()
