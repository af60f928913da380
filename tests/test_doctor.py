"""`deskbell doctor` talks to the real services and names what to fix."""

from __future__ import annotations

import json
import socket

import pytest
from aiosmtpd.controller import Controller

from bot.doctor import report, run_doctor
from bot.settings import Settings
from tests.test_cli import deskbell


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_on_a_fresh_database_says_to_migrate_then_all_good(empty_db_url):
    before = deskbell(empty_db_url, "doctor", "--json")
    assert before.returncode == 1
    findings = json.loads(before.stdout)["findings"]
    assert findings[0]["check"] == "database" and "deskbell migrate" in findings[0]["message"]
    assert deskbell(empty_db_url, "migrate").returncode == 0
    after = deskbell(empty_db_url, "doctor")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "[ok  ] database" in after.stdout


async def test_doctor_reports_unreachable_redis_smtp_and_webhooks(empty_db_url):
    import asyncio

    from bot.migrate import upgrade

    await asyncio.to_thread(upgrade, empty_db_url)
    dead = _free_port()
    settings = Settings.from_env(
        {
            "DESKBELL_DATABASE_URL": empty_db_url,
            "DESKBELL_REDIS_URL": f"redis://127.0.0.1:{dead}/0",
            "SMTP_URL": f"smtp://user:pw@127.0.0.1:{dead}",
            "DESKBELL_MAIL_FROM": "chat@example.com",
        },
        dotenv=None,
    )
    findings = {f.check: f for f in await run_doctor(settings)}
    assert findings["redis"].level == "fail" and "DESKBELL_REDIS_URL" in findings["redis"].message
    assert findings["email"].level == "fail" and f"127.0.0.1:{dead}" in findings["email"].message
    _text, data, code = report(list(findings.values()))
    assert code == 1 and data["problems"] == 2


async def test_doctor_logs_in_to_a_real_smtp_server(empty_db_url):
    import asyncio

    from bot.migrate import upgrade

    await asyncio.to_thread(upgrade, empty_db_url)

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "250 OK"

    port = _free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings.from_env(
            {"DESKBELL_DATABASE_URL": empty_db_url, "SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=0", "DESKBELL_MAIL_FROM": "chat@example.com"}, dotenv=None
        )
        findings = {f.check: f for f in await run_doctor(settings)}
    finally:
        controller.stop()
    assert findings["email"].level == "ok"
