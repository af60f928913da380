"""``deskbell doctor``: checks a deployment end to end and says in plain words what to fix.

Each check talks to the real thing (the database, Redis, Slack's Web API,
Microsoft's token endpoint, the SMTP server, each webhook endpoint) with a
short timeout, and reports ``ok``, ``warn`` or ``fail`` with the fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from core.clock import utcnow
from core.db import Database
from core.leader import describe_workers, worker_heartbeats
from core.models import ChannelBinding, WebhookEndpoint

from bot.migrate import head_revision
from bot.settings import Settings

TIMEOUT_S = 10.0


@dataclass
class Finding:
    level: str  # ok | warn | fail
    check: str
    message: str

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[self.level]
        return f"[{mark}] {self.check}: {self.message}"


Check = Callable[[Settings, Database], Awaitable[list[Finding]]]


async def check_database(settings: Settings, db: Database) -> list[Finding]:
    try:
        async with db.read() as session:
            current = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except (OSError, DBAPIError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        if "alembic_version" in reason:
            return [Finding("fail", "database", "reachable but not migrated: run `deskbell migrate`")]
        return [Finding("fail", "database", f"cannot connect ({reason}); check DESKBELL_DATABASE_URL")]
    if current != head_revision():
        return [Finding("fail", "database", f"schema is at {current}, this version needs {head_revision()}: run `deskbell migrate`")]
    note = " (SQLite: fine for one process; use PostgreSQL to run several)" if db.is_sqlite else ""
    return [Finding("ok", "database", f"{db.dialect} reachable and migrated{note}")]


async def check_redis(settings: Settings, db: Database) -> list[Finding]:
    if not settings.redis_url:
        return [Finding("ok", "redis", "not configured (needed only for more than one web process)")]
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        await asyncio.wait_for(client.ping(), timeout=TIMEOUT_S)
    except Exception as exc:
        return [Finding("fail", "redis", f"cannot reach DESKBELL_REDIS_URL ({type(exc).__name__}: {exc})")]
    finally:
        await client.aclose()
    return [Finding("ok", "redis", "reachable")]


async def check_public_url(settings: Settings, db: Database) -> list[Finding]:
    if settings.public_url:
        level = "ok" if settings.public_url.startswith("https://") else "warn"
        hint = "" if level == "ok" else " (browsers block some features on plain http; use https in production)"
        return [Finding(level, "public URL", f"{settings.public_url}{hint}")]
    if settings.slack_enabled or settings.teams_enabled:
        return [Finding("warn", "public URL", "DESKBELL_PUBLIC_URL is not set: links in Slack/Teams posts and emails will point at the bound address")]
    return [Finding("ok", "public URL", "not set; fine for local use")]


async def check_slack(settings: Settings, db: Database) -> list[Finding]:
    if not settings.slack_enabled:
        return [Finding("ok", "slack", "not configured")]
    if not settings.slack_bot_token:
        return [Finding("ok", "slack", "multi-workspace install: tokens come from /slack/install")]
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.config import DEFAULT_API_URL
    from adapters.slack.manifest import BOT_SCOPES

    client = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url or DEFAULT_API_URL, timeout=TIMEOUT_S)
    findings: list[Finding] = []
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return [Finding("fail", "slack", f"SLACK_BOT_TOKEN was refused ({exc.response.get('error')}): reinstall the app and copy its bot token")]
    except Exception as exc:
        return [Finding("fail", "slack", f"cannot reach Slack ({type(exc).__name__}: {exc})")]
    findings.append(Finding("ok", "slack", f"token works for workspace {auth.get('team')} as {auth.get('user')}"))
    granted = {s.strip() for s in str(auth.headers.get("x-oauth-scopes", auth.headers.get("X-OAuth-Scopes", ""))).split(",") if s.strip()}
    missing = sorted(set(BOT_SCOPES) - granted) if granted else []
    if missing:
        findings.append(Finding("fail", "slack scopes", f"missing {', '.join(missing)}: add them (see `deskbell manifest slack`) and reinstall"))
    async with db.read() as session:
        bindings = list((await session.execute(select(ChannelBinding).where(ChannelBinding.platform == "slack"))).scalars())
    for binding in bindings:
        try:
            info = await client.conversations_info(channel=binding.channel_id)
        except SlackApiError as exc:
            findings.append(Finding("fail", f"slack #{binding.channel_name or binding.channel_id}", f"{exc.response.get('error')}: bind another channel with /chat-setup"))
            continue
        if not info["channel"].get("is_member"):
            findings.append(Finding("fail", f"slack #{binding.channel_name or binding.channel_id}", "the bot is not in the channel: /invite it there"))
        else:
            findings.append(Finding("ok", f"slack #{binding.channel_name or binding.channel_id}", f"bound to widget {binding.widget_id}, bot is a member"))
    return findings


async def check_teams(settings: Settings, db: Database) -> list[Finding]:
    if not settings.teams_enabled:
        return [Finding("ok", "teams", "not configured")]
    if not settings.teams_app_id:
        return [Finding("warn", "teams", "TEAMS_LOCAL_DEV is on: inbound activities are not authenticated; never use this in production")]
    from adapters.teams.auth import ClientCredentials
    from adapters.teams.config import BOT_FRAMEWORK_SCOPE, TeamsConfig

    config = TeamsConfig(app_id=settings.teams_app_id, app_password=settings.teams_app_password,
                         tenant_id=settings.teams_tenant_id, token_url=settings.teams_token_url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        credentials = ClientCredentials(settings.teams_app_id, settings.teams_app_password or "", config.token_endpoint(), lambda: session)
        try:
            await credentials.token(BOT_FRAMEWORK_SCOPE)
        except Exception as exc:
            return [Finding("fail", "teams", f"TEAMS_APP_ID/TEAMS_APP_PASSWORD were refused ({type(exc).__name__}: {exc}); create a new client secret for the bot's app registration")]
    return [Finding("ok", "teams", "bot credentials accepted by Microsoft Entra")]


async def check_smtp(settings: Settings, db: Database) -> list[Finding]:
    if settings.smtp is None:
        return [Finding("warn", "email", "SMTP_URL is not set: offline-message emails wait until it is")]
    import aiosmtplib

    c = settings.smtp
    client = aiosmtplib.SMTP(hostname=c.hostname, port=c.port, use_tls=c.use_tls, start_tls=c.start_tls, timeout=TIMEOUT_S)
    try:
        await client.connect()
        if c.username:
            await client.login(c.username, c.password or "")
    except aiosmtplib.SMTPAuthenticationError:
        return [Finding("fail", "email", f"{c.describe()} refused the user name or password in SMTP_URL")]
    except Exception as exc:
        return [Finding("fail", "email", f"cannot reach {c.describe()} ({type(exc).__name__}: {exc})")]
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except Exception:
                client.close()
    return [Finding("ok", "email", f"{c.describe()} accepts our login")]


async def check_webhooks(settings: Settings, db: Database) -> list[Finding]:
    async with db.read() as session:
        endpoints = list((await session.execute(select(WebhookEndpoint))).scalars())
    if not endpoints:
        return [Finding("ok", "webhooks", "no endpoints")]
    findings: list[Finding] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
        for endpoint in endpoints:
            label = f"webhook {endpoint.id}"
            if not endpoint.enabled:
                findings.append(Finding("warn", label, f"{endpoint.url} is disabled (it answered 410 Gone, or was switched off)"))
                continue
            try:
                # An unsigned probe: the receiver should refuse it, which proves it is there.
                async with http.head(endpoint.url, allow_redirects=False) as resp:
                    findings.append(Finding("ok", label, f"{endpoint.url} answers (HTTP {resp.status})"))
            except Exception as exc:
                findings.append(Finding("fail", label, f"{endpoint.url} is unreachable ({type(exc).__name__}); deliveries will retry and then go dead"))
    return findings


async def check_worker(settings: Settings, db: Database) -> list[Finding]:
    """Some worker wrote its heartbeat within a minute (nothing is delivered otherwise)."""
    async with db.read() as session:
        beats = await worker_heartbeats(session)
    alive, message = describe_workers(beats, utcnow())
    return [Finding("ok" if alive else "warn", "worker", message)]


CHECKS: list[Check] = [
    check_database, check_redis, check_public_url, check_slack, check_teams, check_smtp, check_webhooks, check_worker,
]


async def run_doctor(settings: Settings) -> list[Finding]:
    db = Database(settings.database_url)
    findings: list[Finding] = []
    try:
        findings += await check_database(settings, db)
        schema_ok = findings[-1].level != "fail"
        for check in CHECKS[1:]:
            if not schema_ok and check in (check_slack, check_webhooks, check_worker):
                continue  # they read tables that are not there
            try:
                findings += await check(settings, db)
            except Exception as exc:  # a broken check must not hide the others
                findings.append(Finding("fail", check.__name__.removeprefix("check_"), f"the check itself failed: {type(exc).__name__}: {exc}"))
    finally:
        await db.dispose()
    return findings


def report(findings: list[Finding]) -> tuple[str, dict[str, Any], int]:
    text_out = "\n".join(f.line() for f in findings)
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    text_out += f"\n{failed} problem(s), {warned} warning(s)" if failed or warned else "\nall good"
    data = {"findings": [f.__dict__ for f in findings], "problems": failed, "warnings": warned}
    return text_out, data, 1 if failed else 0
