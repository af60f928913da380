"""Many rows in one statement on PostgreSQL: each column sent as an array and unnested.

An ``executemany`` runs its statement once per row: on PostgreSQL that is a
Bind and an Execute each, and the server plans, runs and logs each one. A
worker recording a batch of deliveries made three such statements per
delivery (its attempt, its row's new state, the relayed message's link):
27,000 statements for the 9,000 lines of a 30-second benchmark run. With
arrays a batch is one statement per table whatever its size, and every batch
size runs the same prepared statement.

SQLite answers ``executemany`` in-process, so there these helpers run one
statement per row, on the write transaction's own connection
(core/driver_sql.py). (One JSON array of rows read by ``json_each``, as the
visitor lines' store does, was measured for these tables: 30 delivery
attempts cost 0.87-1.09 ms of CPU that way against 0.81-0.92 ms by
``executemany``.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, ColumnElement, Table, Text, any_, bindparam, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeEngine

from core.driver_sql import execute_many

__all__ = ["among", "insert_many", "update_many"]


def among(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the list bound as ``name``.

    PostgreSQL: ``= ANY(array)``, one statement text for every length of list.
    An expanding ``IN`` is rendered again for each call (a worker's claims and
    records spent 7 % of its CPU there) and each length is one more prepared
    statement. SQLite has no arrays: an expanding ``IN``.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _is_json(column_type: TypeEngine[Any]) -> bool:
    return isinstance(column_type, JSON)


def _array_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """JSON travels as text (cast back in the SQL): asyncpg has no array of JSON to send."""
    return ARRAY(Text) if _is_json(column_type) else ARRAY(column_type)


def _value(table: Table, name: str, column: str) -> str:
    """The SQL for unnested column ``name`` of ``v``, cast back to JSON where it is."""
    return f"CAST(v.{name} AS JSON)" if _is_json(table.c[column].type) else f"v.{name}"


@lru_cache(maxsize=256)
def _insert_sql(table: Table, columns: tuple[str, ...], skip_existing: bool) -> TextClause:
    names = [f"c{i}" for i in range(len(columns))]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {', '.join(_value(table, n, c) for n, c in zip(names, columns))} "
        f"FROM unnest({', '.join(':' + n for n in names)}) AS v({', '.join(names)})"
        + (" ON CONFLICT DO NOTHING" if skip_existing else "")
    )
    return sql_text(sql).bindparams(
        *(bindparam(n, type_=_array_type(table.c[c].type)) for n, c in zip(names, columns))
    )


@lru_cache(maxsize=256)
def _update_sql(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    names = [f"c{i}" for i in range(len(columns))]
    sql = (
        f"UPDATE {table.name} AS t SET "
        + ", ".join(f"{c} = {_value(table, n, c)}" for n, c in zip(names, columns))
        + f" FROM unnest(:k, {', '.join(':' + n for n in names)}) AS v(k, {', '.join(names)})"
        + f" WHERE t.{key} = v.k"
    )
    return sql_text(sql).bindparams(
        bindparam("k", type_=ARRAY(table.c[key].type)),
        *(bindparam(n, type_=_array_type(table.c[c].type)) for n, c in zip(names, columns)),
    )


def _arrays(table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]], prefix: str = "c") -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {}
    for i, column in enumerate(columns):
        values = [row[column] for row in rows]
        if _is_json(table.c[column].type):
            values = [None if v is None else json.dumps(v) for v in values]
        params[f"{prefix}{i}"] = values
    return params


async def insert_many(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *, skip_existing: bool = False
) -> None:
    """INSERT ``rows`` (all with the same keys) into ``table`` in one statement;
    ``skip_existing`` leaves out rows whose unique key is taken (``ON CONFLICT DO NOTHING``)."""
    if not rows:
        return
    defaults = _defaults(table, rows[0])
    if defaults:  # what SQLAlchemy's INSERT would have filled in (one value for the batch)
        rows = [{**defaults, **row} for row in rows]
    columns = tuple(sorted(rows[0]))
    if session.get_bind().dialect.name != "postgresql":
        await execute_many(session, _sqlite_insert(table, columns, skip_existing), rows)
        return
    await session.execute(_insert_sql(table, columns, skip_existing), _arrays(table, columns, rows))


@lru_cache(maxsize=None)
def _sqlite_insert(table: Table, columns: tuple[str, ...], skip_existing: bool) -> Any:
    """SQLite's INSERT of ``columns``, one typed parameter per column (run inline, core/driver_sql.py)."""
    statement = sqlite_insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns})
    return statement.on_conflict_do_nothing() if skip_existing else statement


@lru_cache(maxsize=None)
def _sqlite_update(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    """SQLite's UPDATE of ``columns`` on the row whose ``key`` is ``b_key``, typed as :func:`_sqlite_insert`."""
    return (
        update(table)
        .where(table.c[key] == bindparam("b_key", type_=table.c[key].type))
        .values({c: bindparam(f"b_{c}", type_=table.c[c].type) for c in columns})
    )


def _defaults(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """The columns' Python-side defaults for those ``row`` leaves out: a raw statement
    does not apply them as SQLAlchemy's INSERT does (server defaults apply anyway)."""
    values: dict[str, Any] = {}
    for column in table.c:
        default = column.default
        if column.name in row or default is None:
            continue
        if default.is_scalar:
            values[column.name] = default.arg
        elif default.is_callable:
            values[column.name] = default.arg(None)
    return values


async def update_many(session: AsyncSession, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Set each row's columns (all rows with the same keys) on the row whose ``key`` column
    matches the row's ``key`` value, in one statement."""
    if not rows:
        return
    columns = tuple(sorted(c for c in rows[0] if c != key))
    if session.get_bind().dialect.name != "postgresql":
        params = [{"b_key": row[key], **{f"b_{c}": row[c] for c in columns}} for row in rows]
        await execute_many(session, _sqlite_update(table, key, columns), params)
        return
    params = {"k": [row[key] for row in rows], **_arrays(table, columns, rows)}
    await session.execute(_update_sql(table, key, columns), params)
