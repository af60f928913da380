"""Instance-wide settings kept in the database (the generated secret key)."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Setting


async def get_setting(session: AsyncSession, name: str) -> str | None:
    row = await session.get(Setting, name)
    return row.value if row else None


async def set_setting(session: AsyncSession, name: str, value: str) -> None:
    row = await session.get(Setting, name)
    if row is None:
        session.add(Setting(name=name, value=value))
    else:
        row.value = value
    await session.flush()


async def ensure_secret_key(session: AsyncSession) -> str:
    """The signing secret used when DESKBELL_SECRET_KEY is not set.

    Generated once and kept with the data, so visitor tokens and console
    sessions survive restarts of a zero-configuration install.
    """
    existing = await get_setting(session, "secret_key")
    if existing:
        return existing
    value = secrets.token_urlsafe(32)
    await set_setting(session, "secret_key", value)
    return value
