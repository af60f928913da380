"""Watching the SQL a piece of code runs: tests that prove a path costs N statements (or none)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from core.db import Database


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every statement the database's engines run inside the block, whitespace collapsed."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    def record_driver(statement: str, _rows: int) -> None:  # statements run past SQLAlchemy (core/driver_sql.py)
        seen.append(" ".join(statement.split()))

    engines = {db.engine.sync_engine, db._write_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    db.driver_listeners.append(record_driver)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
        db.driver_listeners.remove(record_driver)
