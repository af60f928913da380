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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util import greenlet_spawn

Processor = Callable[[Any], Any] | None
Listener = Callable[[str], None]


class DriverStatement:
    """``statement`` compiled once for ``engine``'s dialect; :meth:`fetch` runs it."""

    def __init__(self, statement: TextClause, engine: AsyncEngine, listeners: list[Listener]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise ValueError("a driver statement needs positional parameters and no expanding lists")
        self.sql = compiled.string
        # The dialect's own form of each type (JSON on asyncpg is not generic JSON), as Core uses.
        self._binds: list[tuple[str, Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup
        ]
        self._columns: list[tuple[str, Processor]] = [
            (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in statement.selected_columns  # type: ignore[attr-defined]
        ]
        self._engine = engine
        self._listeners = listeners

    async def fetch(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the statement outside any transaction (it commits on its own); its rows as dicts."""
        args = [params[name] if process is None else process(params[name]) for name, process in self._binds]
        for listener in self._listeners:
            listener(self.sql)
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
        columns = self._columns
        return [
            {name: record[i] if process is None else process(record[i]) for i, (name, process) in enumerate(columns)}
            for record in records
        ]
