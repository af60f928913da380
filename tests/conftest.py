"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is expected at DESKBELL_TEST_POSTGRES_URL (default: the local
trust-auth server); each test run works in a database of its own on that
server. Under CI=true an unreachable server fails the tests instead of
skipping them, so a green CI always means both databases ran.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import Database
from core.models import Base
from core.services import Limits, Services

from bot.app import build_app
from bot.settings import Settings
from bot.wiring import build_services

PG_URL = os.environ.get("DESKBELL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
_pg_schema_ready = False


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if _pg_reachable():
        return
    if IN_CI:
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (CI=true requires it)")
    pytest.skip("PostgreSQL is not running here (start it, or run with CI=true to make this fail)")


async def _reset_postgres(db: Database) -> None:
    global _pg_schema_ready
    async with db.engine.begin() as conn:
        if not _pg_schema_ready:
            # Start from nothing: tables left by other branches or versions must not interfere.
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            await conn.run_sync(Base.metadata.create_all)
            _pg_schema_ready = True
        else:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg", "postgresql").rsplit("/", 1)[0] + "/postgres"


async def _create_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """A database of this test run's own on the PostgreSQL server of PG_URL, so
    two runs on one machine (or a developer's and CI's) never share tables."""
    require_postgres()
    name = f"deskbell_run_{os.getpid()}"
    asyncio.run(_create_database(name))
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(_drop_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_session_url")
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    if database.is_sqlite:
        async with database.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    else:
        await _reset_postgres(database)
    yield database
    await database.dispose()


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def services(db: Database, db_url: str, limits: Limits) -> AsyncIterator[Services]:
    await db.dispose()
    settings = Settings(database_url=db_url, secret_key="test-secret-key-0123456789")
    svc = await build_services(settings, public_url="", limits=limits)
    yield svc
    await svc.bus.drain()  # type: ignore[attr-defined]
    await svc.close()


@pytest.fixture
async def client(aiohttp_client, services: Services):  # type: ignore[no-untyped-def]
    """A test client for the whole application on the parametrized database."""
    return await aiohttp_client(build_app(services))


async def eventually(predicate, timeout: float = 3.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` (sync or async) is truthy; return its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it (for migrations and the command line)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    require_postgres()
    name = f"deskbell_t_{os.getpid()}_{id(request) % 100000}"
    await _create_database(name)
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    await _drop_database(name)


REDIS_URL = os.environ.get("DESKBELL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The local Redis; under CI=true its absence fails the test instead of skipping it."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return REDIS_URL
    except OSError:
        if IN_CI:
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI=true requires it)")
        pytest.skip("Redis is not running here (start it, or run with CI=true to make this fail)")
