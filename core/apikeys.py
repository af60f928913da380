"""REST API keys: shown once at creation, stored as SHA-256 hashes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso, utcnow
from core.errors import Unauthorized, ValidationFailed
from core.models import ApiKey
from core.tokens import hash_secret, new_secret


async def create_api_key(session: AsyncSession, name: str) -> tuple[ApiKey, str]:
    """The stored key and the plain secret, which is never available again."""
    try:
        cleaned = v.text(name, max_len=200)
    except v.FieldError as exc:
        raise ValidationFailed.of({"name": str(exc)}) from exc
    secret = new_secret("dbk_", 30)
    key = ApiKey(name=cleaned, prefix=secret[:10], key_hash=hash_secret(secret))
    session.add(key)
    await session.flush()
    return key, secret


async def authenticate(session: AsyncSession, secret: str) -> ApiKey:
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_secret(secret)))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid API key")
    return row


async def revoke_api_keys_named(session: AsyncSession, name: str) -> None:
    rows = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalars()
    for row in rows:
        if row.revoked_at is None:
            row.revoked_at = utcnow()


def api_key_to_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }
