"""Dashboard administrators: email + password, and their browser sessions.

Passwords are stored as scrypt hashes (``hashlib.scrypt``, a per-password
random salt, parameters kept in the stored string so they can be raised
later without breaking old hashes). Sessions are random tokens of which only
the SHA-256 is stored, like agents' console tokens (``core.agents``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.clock import iso, utcnow
from core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from core.models import AdminSession, AdminUser
from core.tokens import hash_secret, new_secret

SESSION_TTL = timedelta(days=7)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
# scrypt cost: 2**15 * 8 * 128 B = 32 MiB of memory and ~0.1 s per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**15, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024
SIGN_IN_FAILED = "wrong email or password"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64 without padding)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=SCRYPT_LEN, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` string."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=_MAXMEM
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Checked when the email is unknown, so a wrong email costs as long as a wrong password.
# Random salt and digest in the current format: verifying against it runs the same scrypt as
# a real hash, and nothing is hashed at import (scrypt costs ~0.1 s, paid by every command).
_DUMMY_HASH = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(SCRYPT_LEN))}"
)


def clean_password(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.of({"password": "must be a string"})
    if len(value) < MIN_PASSWORD:
        raise ValidationFailed.of({"password": f"must be at least {MIN_PASSWORD} characters"})
    if len(value) > MAX_PASSWORD:
        raise ValidationFailed.of({"password": f"must be at most {MAX_PASSWORD} characters"})
    return value


def clean_email(value: Any) -> str:
    try:
        cleaned = v.email(value)
    except v.FieldError as exc:
        raise ValidationFailed.of({"email": str(exc)}) from exc
    assert cleaned is not None
    return cleaned.lower()


async def find_admin(session: AsyncSession, email: str) -> AdminUser | None:
    query = select(AdminUser).where(AdminUser.email == email.strip().lower())
    return (await session.execute(query)).scalar_one_or_none()


async def create_admin(session: AsyncSession, email: Any, password: Any) -> AdminUser:
    address = clean_email(email)
    secret = clean_password(password)
    if await find_admin(session, address) is not None:
        raise Conflict(f"an admin with email {address} already exists; change the password with `deskbell admin password {address}`")
    admin = AdminUser(email=address, password_hash=hash_password(secret))
    session.add(admin)
    await session.flush()
    return admin


async def set_password(session: AsyncSession, email: Any, password: Any) -> AdminUser:
    """A new password; every session of that admin ends."""
    admin = await find_admin(session, clean_email(email))
    if admin is None:
        raise NotFound(f"no admin with email {email}")
    admin.password_hash = hash_password(clean_password(password))
    await session.execute(delete(AdminSession).where(AdminSession.admin_id == admin.id))
    await session.flush()
    return admin


async def count_admins(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count(AdminUser.id)))).scalar_one())


async def check_credentials(session: AsyncSession, email: Any, password: Any) -> AdminUser:
    """The admin these credentials belong to, or ``Unauthorized`` (same message and cost either way).

    Hashing runs in a thread: ~0.1 s of scrypt must not stall the event loop.
    """
    if not isinstance(email, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
        raise Unauthorized(SIGN_IN_FAILED)
    admin = await find_admin(session, email) if len(email) <= 320 else None
    stored = admin.password_hash if admin is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, password, stored)
    if admin is None or not ok:
        raise Unauthorized(SIGN_IN_FAILED)
    return admin


async def open_session(session: AsyncSession, admin_id: int) -> str:
    """A new dashboard session for a checked admin; returns the cookie token (stored hashed)."""
    admin = await session.get(AdminUser, admin_id)
    if admin is None:
        raise Unauthorized(SIGN_IN_FAILED)
    now = utcnow()
    admin.last_login_at = now
    token = new_secret("das_", 32)
    session.add(AdminSession(admin_id=admin.id, token_hash=hash_secret(token), expires_at=now + SESSION_TTL))
    # Expired sessions of anyone are cleared on each sign-in, so the table stays small.
    await session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    await session.flush()
    return token


async def admin_for_session(session: AsyncSession, token: str | None) -> AdminUser:
    if not token or len(token) > 200:
        raise Unauthorized("not signed in")
    row = (
        await session.execute(select(AdminSession).where(AdminSession.token_hash == hash_secret(token)))
    ).scalar_one_or_none()
    if row is None or row.expires_at <= utcnow():
        raise Unauthorized("your session has ended; sign in again")
    admin = await session.get(AdminUser, row.admin_id)
    if admin is None:
        raise Unauthorized("your session has ended; sign in again")
    return admin


async def sign_out(session: AsyncSession, token: str) -> None:
    await session.execute(delete(AdminSession).where(AdminSession.token_hash == hash_secret(token)))


def csrf_token(session_token: str) -> str:
    """The form token of one session: derived from the cookie, which pages never expose."""
    return hashlib.sha256(("admin-csrf:" + session_token).encode()).hexdigest()[:40]


def admin_to_json(admin: AdminUser) -> dict[str, Any]:
    return {
        "id": admin.id,
        "email": admin.email,
        "created_at": iso(admin.created_at),
        "last_login_at": iso(admin.last_login_at),
    }
