"""A hot statement run on the driver's own connection, past SQLAlchemy's execution layers.

On PostgreSQL a visitor's line is one self-committing statement (see
``store_in_chats`` in core/line_batches.py). Storing it took about 44 % of
the web process's CPU under the relay benchmark, most of it in SQLAlchemy's
session and execution layers around the statement. Client CPU per call of a
two-array ``unnest`` (measured here, 2,000 calls):

* an ORM session outside any transaction (how it ran before): 370 µs;
* Core connection: 310 µs;
* the pool's connection, the statement sent by the driver (this module): 160 µs.

The statement is still SQLAlchemy's: built and compiled by it once, with
its bind and result processors applied to the values, so rows come back as
a Core execution would return them (aware timestamps, JSON decoded). The
connection is still the pool's, with its checkout events (the idle ping)
and the codecs SQLAlchemy set up on it.

What this path does not give: SQLAlchemy's cursor events (``echo`` logging,
statement listeners) and its disconnect handling. :attr:`Database.driver_listeners`
stands in for the first; for the second, a connection that fails other than
by a server error (gone, cancelled) is dropped from the pool, not returned,
and the caller's fallback (a group commit's transaction) goes through
SQLAlchemy, which notices a dead pool as usual.

On SQLite the hot statements are those of a write transaction: a visitor's
line reserves its seq, is inserted and owes its relays, a worker records
what it delivered. :func:`returned_rows` and :func:`execute_many` run them
on that transaction's own sqlite3 connection, compiled the same way, and
leave every other case to the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement, TextClause
from sqlalchemy.util import greenlet_spawn

from core.sqlite_driver import InlineConnection

Processor = Callable[[Any], Any] | None
Listener = Callable[[str, int], None]  # (the SQL, how many rows of parameters it ran with)


class Compiled:
    """``statement`` compiled once for ``dialect``, with the processors Core applies to its values.

    Values missing from a call's parameters take the statement's own (a literal
    in a Core expression, ``status == "open"``, is a bound parameter too).
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise ValueError("a driver statement needs positional parameters and no expanding lists")
        self.sql = compiled.string
        # The dialect's own form of each type (JSON on asyncpg is not generic JSON), as Core uses.
        binds = compiled.binds
        self._binds: list[tuple[str, Processor, bool, Any]] = [
            (
                name,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                binds[name].required,
                None if binds[name].required else binds[name].effective_value,
            )
            for name in compiled.positiontup
        ]
        self._columns: list[tuple[str, Processor]] = [
            (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in statement.exported_columns  # type: ignore[attr-defined]
        ]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional values of one call, processed."""
        out = []
        for name, process, required, default in self._binds:
            value = params[name] if required else params.get(name, default)
            out.append(value if process is None else process(value))
        return out

    def rows(self, records: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
        """Returned records as dicts of processed values, as a Core execution returns them."""
        columns = self._columns
        return [
            {name: record[i] if process is None else process(record[i]) for i, (name, process) in enumerate(columns)}
            for record in records
        ]


class DriverStatement:
    """PostgreSQL: ``statement`` compiled once for ``engine``'s dialect; :meth:`fetch` runs it."""

    def __init__(self, statement: TextClause, engine: AsyncEngine, listeners: list[Listener]) -> None:
        self._compiled = Compiled(statement, engine.dialect)
        self.sql = self._compiled.sql
        self._engine = engine
        self._listeners = listeners

    async def fetch(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the statement outside any transaction (it commits on its own); its rows as dicts."""
        args = self._compiled.args(params)
        for listener in self._listeners:
            listener(self.sql, 1)
        fairy = await self._engine.raw_connection()
        driver = fairy.driver_connection
        keep = False
        try:
            if driver.is_in_transaction():  # never expected (the pool resets connections): the
                await greenlet_spawn(fairy.dbapi_connection.rollback)  # statement would be rolled back
            records = await driver.fetch(self.sql, *args)
            keep = True
        except Exception as exc:
            # A server's error (a constraint, a deadlock) leaves the connection as it was;
            # anything else (the connection gone, a protocol error) may not have.
            keep = hasattr(exc, "sqlstate") and not driver.is_closed()
            raise
        finally:  # a cancel leaves ``keep`` False: the driver may be mid-statement
            await greenlet_spawn(fairy.close if keep else fairy.invalidate)
        return self._compiled.rows(records)


# ------------------------------------------------------------------ SQLite, inside a write transaction

LISTENERS = "deskbell.driver_listeners"  # session.info key: Database.driver_listeners
_DRIVER = "deskbell.inline_driver"  # session.info key: (transaction, its InlineConnection or None)
_SQLITE: dict[Any, Compiled] = {}  # by statement (built once by its callers)


async def returned_rows(session: AsyncSession, statement: Executable, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows ``statement`` returns (RETURNING, or a SELECT), run in the session's transaction, as dicts.

    In a SQLite write transaction the statement runs on that transaction's
    own sqlite3 connection, at once (see :func:`_inline_driver`); elsewhere
    through the session, as usual.
    """
    driver = await _inline_driver(session)
    if driver is None:
        return [dict(row._mapping) for row in (await session.execute(statement, params)).all()]
    compiled = _compiled(session, statement)
    _notify(session, compiled.sql, 1)
    return compiled.rows(driver.run_now(compiled.sql, compiled.args(params)).fetchall())


async def execute_many(session: AsyncSession, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
    """``statement`` (without RETURNING) once for each of ``rows``, in the session's transaction.

    Inline in a SQLite write transaction, as :func:`returned_rows` is; every
    row must then give each of the statement's parameters that has no value
    of its own (a typed ``bindparam`` per column: Core fills nothing in here).
    """
    if not rows:
        return
    driver = await _inline_driver(session)
    if driver is None:
        await session.execute(statement, list(rows), execution_options={"synchronize_session": False})
        return
    compiled = _compiled(session, statement)
    _notify(session, compiled.sql, len(rows))
    driver.run_many_now(compiled.sql, [compiled.args(row) for row in rows])


def _compiled(session: AsyncSession, statement: Executable) -> Compiled:
    compiled = _SQLITE.get(statement)
    if compiled is None:
        compiled = _SQLITE[statement] = Compiled(statement, session.get_bind().dialect)  # type: ignore[arg-type]
    return compiled


async def _inline_driver(session: AsyncSession) -> InlineConnection | None:
    """The sqlite3 connection of the session's write transaction (BEGIN IMMEDIATE), or None.

    Why: a visitor's line is three small statements, and through the
    session each took 140-200 µs of the web process's CPU here, against
    20-30 µs for the same statement with the same bind and result processing
    run on the connection directly. SQLite executes on the caller's thread
    anyway (core/sqlite_driver.py), inside the transaction the session
    opened, so the rows are the session's transaction's like any other.
    Not given: SQLAlchemy's cursor events (``echo``; the session's
    ``LISTENERS`` stand in for statement counting) and autoflush (the
    callers add no ORM objects the statement would need to see).
    """
    if session.get_bind().dialect.name != "sqlite":
        return None
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]  # type: ignore[no-any-return]
    connection = await session.connection()  # begins the transaction if it has not begun yet
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, InlineConnection) or not driver.writing:
        driver = None  # a read session, or another driver: through the session
    session.info[_DRIVER] = (session.sync_session.get_transaction(), driver)
    return driver


def _notify(session: AsyncSession, sql: str, rows: int) -> None:
    for listener in session.info.get(LISTENERS, ()):
        listener(sql, rows)
