"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.db import Database
from core.models import Base

from bot.migrate import downgrade, head_revision, upgrade


async def _diff(db: Database) -> list:  # type: ignore[type-arg]
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )


async def test_upgrade_to_head_matches_the_models(empty_db_url):
    db = Database(empty_db_url)
    try:
        await asyncio.to_thread(upgrade, empty_db_url)
        async with db.read() as session:
            version = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version == head_revision()
        assert await _diff(db) == []
    finally:
        await db.dispose()


async def test_downgrade_to_base_removes_everything_and_upgrade_restores(empty_db_url):
    db = Database(empty_db_url)
    try:
        await asyncio.to_thread(upgrade, empty_db_url)
        await asyncio.to_thread(downgrade, empty_db_url, "base")
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
        assert set(tables) <= {"alembic_version"}
        await asyncio.to_thread(upgrade, empty_db_url)
        assert await _diff(db) == []
    finally:
        await db.dispose()
