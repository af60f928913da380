"""core/sqlite_driver.py: statements that cannot wait run inline, those that can wait never
block the event loop, and a cancelled caller cannot make two threads use one connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import Database
from core.sqlite_driver import InlineConnection


async def _driver(db: Database) -> InlineConnection:
    async with db._write_engine.connect() as conn:  # the writer's one pooled connection
        raw = await conn.get_raw_connection()
        return raw.driver_connection  # type: ignore[return-value]


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'd.db'}")
    async with database.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield database
    await database.dispose()


async def test_a_write_transaction_with_the_lock_free_runs_entirely_on_the_loop_thread(db: Database) -> None:
    driver = await _driver(db)
    before_inline, before_offloaded = driver.inline, driver.offloaded
    async with db.write() as s:
        for i in range(20):
            await s.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(i)})
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 20
    assert driver.offloaded - before_offloaded == 0  # no thread: BEGIN IMMEDIATE, statements, COMMIT
    assert driver.inline - before_inline == 23
    async with db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 20


async def test_waiting_for_another_process_lock_does_not_block_the_loop(db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    other.execute("INSERT INTO t (v) VALUES ('theirs')")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    release = threading.Timer(0.5, other.commit)  # they finish after 0.5 s
    release.start()
    started = time.monotonic()
    async with db.write() as s:  # BEGIN IMMEDIATE waits for them (busy_timeout)
        await s.execute(text("INSERT INTO t (v) VALUES ('ours')"))
    waited = time.monotonic() - started
    tick_task.cancel()
    release.join()
    other.close()
    assert 0.4 <= waited < 0.6  # tried again every few ms: taken soon after it was freed
    assert (await _driver(db)).lock_waits >= 1
    assert ticks >= 20, "the event loop stood still while SQLite waited for the lock"
    async with db.read() as s:
        assert sorted((await s.execute(text("SELECT v FROM t"))).scalars()) == ["ours", "theirs"]


async def test_reads_go_on_while_another_process_holds_the_write_lock(db: Database, tmp_path: Path) -> None:
    async with db.write() as s:
        await s.execute(text("INSERT INTO t (v) VALUES ('a')"))
    other = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (v) VALUES ('uncommitted')")
    try:
        started = time.monotonic()
        async with db.read() as s:
            assert list((await s.execute(text("SELECT v FROM t"))).scalars()) == ["a"]
        assert time.monotonic() - started < 0.5
    finally:
        other.rollback()
        other.close()


async def test_a_caller_cancelled_while_sqlite_waits_leaves_the_connection_usable(db: Database, tmp_path: Path) -> None:
    """The statement keeps running in its thread; the rollback and the next user wait for it."""
    other = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with db.write() as s:
            await s.execute(text("INSERT INTO t (v) VALUES ('late')"))

    task = asyncio.create_task(write())
    await asyncio.sleep(0.2)  # BEGIN IMMEDIATE is waiting for the lock
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release = threading.Timer(0.3, other.rollback)
    release.start()
    async with db.write() as s:
        await s.execute(text("INSERT INTO t (v) VALUES ('next')"))
    release.join()
    other.close()
    async with db.read() as s:
        assert list((await s.execute(text("SELECT v FROM t"))).scalars()) == ["next"]


async def test_dispose_while_a_statement_runs_in_a_thread_does_not_crash(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'e.db'}")
    async with database.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with database.write() as s:
            await s.execute(text("INSERT INTO t DEFAULT VALUES"))

    task = asyncio.create_task(write())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release = threading.Timer(0.3, other.rollback)
    release.start()
    await database.dispose()  # closes after the waiting BEGIN returns, not during it
    release.join()
    other.close()
    check = sqlite3.connect(tmp_path / "e.db")
    assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)
    check.close()


async def test_errors_are_sqlite3_errors_as_with_aiosqlite(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    with pytest.raises(OperationalError):
        async with db.read() as s:
            await s.execute(text("SELECT nope FROM t"))
    async with db.write() as s:
        await s.execute(text("INSERT INTO t (id, v) VALUES (1, 'x')"))
    with pytest.raises(IntegrityError):
        async with db.write() as s:
            await s.execute(text("INSERT INTO t (id, v) VALUES (1, 'y')"))
    async with db.read() as s:
        assert list((await s.execute(text("SELECT v FROM t"))).scalars()) == ["x"]


async def test_a_lock_held_past_the_busy_timeout_still_fails_and_the_timeout_is_kept(tmp_path: Path) -> None:
    """Waiting in small steps (not SQLite's own sleeps) keeps the connection's busy_timeout as the bound."""
    database = Database(f"sqlite:///{tmp_path / 'e.db'}")
    async with database.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    driver = await _driver(database)
    driver.raw.execute("PRAGMA busy_timeout = 300")
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match="locked"):
            async with database.write() as s:
                await s.execute(text("INSERT INTO t (v) VALUES ('ours')"))
        assert 0.25 <= time.monotonic() - started < 2.0
        assert driver.raw.execute("PRAGMA busy_timeout").fetchone()[0] == 300
    finally:
        other.rollback()
        other.close()
        await database.dispose()


async def test_commits_do_not_checkpoint_the_wal_the_checkpointer_does_in_a_thread(db: Database, tmp_path: Path) -> None:
    """A commit on the loop's thread must never do SQLite's automatic checkpoint (milliseconds);
    the checkpointer copies the WAL into the database file often enough instead."""
    from core import sqlite_driver

    driver = await _driver(db)
    assert driver.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    checkpointer = driver.checkpointer
    assert checkpointer is not None
    runs = checkpointer.runs
    for i in range(sqlite_driver.CHECKPOINT_EVERY_COMMITS + 1):
        async with db.write() as s:
            await s.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"row {i}"})
    assert checkpointer.runs > runs
    running = checkpointer._running
    assert running is not None
    await asyncio.wrap_future(running)
    # The database file alone (without its -wal) now holds the rows: they were checkpointed.
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "d.db").read_bytes())
    check = sqlite3.connect(copy)
    try:
        # the fixture's CREATE TABLE was the first of the commits that made it due
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] >= sqlite_driver.CHECKPOINT_EVERY_COMMITS - 1
    finally:
        check.close()


async def test_the_checkpointer_of_a_file_closes_with_its_last_connection(tmp_path: Path) -> None:
    from core import sqlite_driver

    database = Database(f"sqlite:///{tmp_path / 'f.db'}")
    async with database.write() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    async with database.read() as s:
        await s.execute(text("SELECT count(*) FROM t"))
    key = (str(tmp_path / "f.db"), False)
    assert sqlite_driver._CHECKPOINTERS[key].users == 2  # the writer's and the reader's connection
    await database.dispose()
    assert key not in sqlite_driver._CHECKPOINTERS


async def test_readers_as_many_as_a_worker_runs_at_once_reuse_their_connections(db: Database) -> None:
    """A worker reads in up to 64 deliveries at once: those connections are kept, not
    opened (the file and its PRAGMAs, in a thread) and closed again for each burst."""
    from sqlalchemy import event

    from core.db import SQLITE_READERS_KEPT

    opened: list[int] = []
    event.listen(db.engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def read() -> None:
        async with db.read() as s:
            await s.execute(text("SELECT count(*) FROM t"))
            await asyncio.sleep(0.01)  # all of them at once

    await asyncio.gather(*(read() for _ in range(64)))
    first = len(opened)
    assert first <= 64
    for _ in range(3):
        await asyncio.gather(*(read() for _ in range(64)))
    assert len(opened) == first and SQLITE_READERS_KEPT >= 64
