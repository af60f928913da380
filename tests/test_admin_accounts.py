"""Admin accounts: scrypt password hashes, hashed sessions, and `deskbell admin create`."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core import admins
from core.admins import (
    admin_for_session,
    check_credentials,
    create_admin,
    hash_password,
    open_session,
    set_password,
    verify_password,
)
from core.clock import utcnow
from core.errors import Conflict, Unauthorized, ValidationFailed
from core.models import AdminSession, AdminUser
from core.tokens import hash_secret
from tests.test_cli import DESKBELL, _env, deskbell


def test_password_hashes_are_salted_scrypt_and_verify_only_the_right_password():
    a, b = hash_password("correct horse battery", n=2**10), hash_password("correct horse battery", n=2**10)
    assert a.startswith("scrypt$1024$8$1$") and a != b  # a new salt each time
    assert verify_password("correct horse battery", a) and verify_password("correct horse battery", b)
    assert not verify_password("correct horse batterY", a)
    assert not verify_password("x", "garbage") and not verify_password("x", "bcrypt$1$2$3$4$5")


def test_an_unknown_email_is_checked_against_a_hash_as_costly_as_a_real_one():
    """The stand-in hash for unknown emails has the real parameters, so it runs the same scrypt."""
    real, dummy = hash_password("correct horse battery").split("$"), admins._DUMMY_HASH.split("$")
    assert dummy[:4] == real[:4] and [len(part) for part in dummy] == [len(part) for part in real]
    assert not verify_password("", admins._DUMMY_HASH)


async def test_sessions_are_stored_hashed_expire_and_end_with_a_new_password(db):
    async with db.write() as session:
        admin = await create_admin(session, "Boss@Example.com", "correct horse battery")
    assert admin.email == "boss@example.com"
    async with db.read() as session:
        checked = await check_credentials(session, "BOSS@example.com ", "correct horse battery")
        with pytest.raises(Unauthorized):
            await check_credentials(session, "boss@example.com", "wrong password!")
        with pytest.raises(Unauthorized):
            await check_credentials(session, "nobody@example.com", "correct horse battery")
    async with db.write() as session:
        token = await open_session(session, checked.id)
    async with db.read() as session:
        [row] = (await session.execute(select(AdminSession))).scalars()
        assert row.token_hash == hash_secret(token)
        assert (await admin_for_session(session, token)).id == admin.id
    async with db.write() as session:
        await session.execute(update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    async with db.read() as session:
        with pytest.raises(Unauthorized):
            await admin_for_session(session, token)
    async with db.write() as session:
        token = await open_session(session, admin.id)  # also clears the expired one
        await set_password(session, "boss@example.com", "another long password")
    async with db.read() as session:
        assert list((await session.execute(select(AdminSession))).scalars()) == []
        await check_credentials(session, "boss@example.com", "another long password")


async def test_weak_passwords_and_duplicate_admins_are_refused(db):
    async with db.write() as session:
        with pytest.raises(ValidationFailed, match="at least 10"):
            await create_admin(session, "a@example.com", "short")
        with pytest.raises(ValidationFailed):
            await create_admin(session, "not-an-email", "long enough password")
        await create_admin(session, "a@example.com", "long enough password")
        with pytest.raises(Conflict):
            await create_admin(session, "A@example.com", "long enough password")


def _stdin(db_url: str, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DESKBELL, *args], env=_env(db_url), input=password + "\n", capture_output=True, text=True, timeout=60
    )


def test_admin_create_takes_the_password_on_stdin_and_prints_the_sign_in_url(tmp_path):
    # One database is enough here: the verbs are core calls that run on both (see above).
    empty_db_url = f"sqlite:///{tmp_path / 'admins.db'}"
    assert deskbell(empty_db_url, "migrate").returncode == 0
    made = _stdin(empty_db_url, "admin", "create", "boss@example.com", "--password-stdin", "--json", password="correct horse battery")
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["email"] == "boss@example.com" and body["sign_in_url"].endswith("/admin/login")
    again = _stdin(empty_db_url, "admin", "create", "boss@example.com", "--password-stdin", password="correct horse battery")
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    # No terminal and no --password-stdin: say how, never hang on a prompt.
    blind = subprocess.run([DESKBELL, "admin", "create", "y@example.com"], env=_env(empty_db_url), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    assert blind.returncode == 1 and "--password-stdin" in blind.stderr
    reset = _stdin(empty_db_url, "admin", "password", "boss@example.com", "--password-stdin", password="a whole new password")
    assert reset.returncode == 0 and "/admin/login" in reset.stdout
