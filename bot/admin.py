"""Admin verbs of the command line: each returns text for people and data for ``--json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import agent_to_json, create_agent, find_agent, issue_token
from core.apikeys import api_key_to_json, create_api_key
from core.db import Database
from core.errors import ValidationFailed
from core.models import Agent, Widget
from core.offline import list_offline_messages, offline_message_to_json
from core.widgets import create_widget, find_widget, widget_to_json

from bot import migrate as migrations
from bot.settings import Settings


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is not migrated; the message says what to do."""


@dataclass
class Output:
    text: str
    data: Any
    exit_code: int = 0  # non-zero when the verb found a problem (e.g. `widget check`)


def migrate(settings: Settings) -> None:
    try:
        migrations.upgrade(settings.database_url)
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_db_error(settings, exc)) from exc


def describe_db_error(settings: Settings, exc: BaseException) -> str:
    """One line for the operator: a missing schema says to migrate, anything else names the URL."""
    text = str(exc)
    if any(hint in text for hint in ("no such table", "UndefinedTable", "does not exist")):
        return "the database has no deskbell tables yet; run `deskbell migrate` first"
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    return f"DESKBELL_DATABASE_URL: cannot use the database ({reason})"


@asynccontextmanager
async def _session(settings: Settings, write: bool) -> AsyncIterator[AsyncSession]:
    db = Database(settings.database_url)
    try:
        async with (db.write() if write else db.read()) as session:
            yield session
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_db_error(settings, exc)) from exc
    finally:
        await db.dispose()


def embed_snippet(settings: Settings, key: str) -> str:
    base = settings.url_for(settings.host, settings.port)
    return f'<script src="{base}/widget.js" data-widget="{key}" async></script>'


def console_link(settings: Settings, token: str) -> str:
    return f"{settings.url_for(settings.host, settings.port)}/console/login?token={token}"


async def widget_create(settings: Settings, args: argparse.Namespace) -> Output:
    data: dict[str, Any] = {}
    if args.settings:
        try:
            data = json.loads(args.settings)
        except ValueError as exc:
            raise ValidationFailed.of({"--settings": f"is not valid JSON ({exc})"}) from exc
        if not isinstance(data, dict):
            raise ValidationFailed.of({"--settings": "must be a JSON object"})
    async with _session(settings, write=True) as session:
        widget = await create_widget(session, {**data, "name": args.name})
    body = widget_to_json(widget)
    body["embed"] = embed_snippet(settings, widget.key)
    return Output(f"created widget {widget.id} {widget.name!r} key={widget.key}\n{body['embed']}", body)


async def widget_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
    rows = [widget_to_json(w) for w in widgets]
    lines = [f"{w.id:>4}  {w.key}  {'on ' if w.enabled else 'off'}  {w.name}" for w in widgets]
    return Output("\n".join(lines) or "no widgets yet: deskbell widget create NAME", {"items": rows})


async def apikey_create(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        key, secret = await create_api_key(session, args.name)
    body = {**api_key_to_json(key), "key": secret}
    return Output(f"API key {args.name!r} (shown once, store it now):\n{secret}", body)


async def agent_create(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        agent = await create_agent(session, {"name": args.name, "email": args.email})
        token = await issue_token(session, agent, "login")
    link = console_link(settings, token)
    body = {**agent_to_json(agent), "console_login_url": link}
    return Output(f"created agent {agent.id} {agent.name} <{agent.email}>\nconsole sign-in link (7 days): {link}", body)


async def agent_link(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        agent = await find_agent(session, args.agent)
        token = await issue_token(session, agent, "login")
    link = console_link(settings, token)
    return Output(f"console sign-in link for {agent.name} (7 days): {link}", {"agent_id": agent.id, "console_login_url": link})


async def agent_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        agents = list((await session.execute(select(Agent).order_by(Agent.id))).scalars())
    rows = [agent_to_json(a) for a in agents]
    lines = [
        f"{r['id']:>4}  {'on duty ' if r['on_duty'] else 'off duty'}  {'available' if r['available'] else '-        '}  {r['name']} <{r['email']}>"
        for r in rows
    ]
    return Output("\n".join(lines) or "no agents yet: deskbell agent create NAME --email E", {"items": rows})


async def offline_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        widget_id = (await find_widget(session, args.widget)).id if args.widget else None
        rows = await list_offline_messages(
            session, widget_id=widget_id, status=args.status, limit=max(1, min(args.limit, 1000))
        )
    items = [offline_message_to_json(r) for r in rows[: args.limit]]
    lines = [
        f"{m['id']:>5}  {m['created_at'][:16]}  {m['status']:<7}  {m['email']}  {m['message'].splitlines()[0][:60] if m['message'] else ''}"
        for m in items
    ]
    return Output("\n".join(lines) or "no offline messages", {"items": items})


def read_new_password(args: argparse.Namespace) -> str:
    """From stdin with ``--password-stdin`` (scripts), else asked twice on the terminal."""
    import getpass
    import sys

    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValidationFailed.of({"--password-stdin": "there is no terminal to ask for the password; pipe it in with --password-stdin"})
    first = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Same password again: ") != first:
        raise ValidationFailed.of({"password": "the two passwords differ"})
    return first


def admin_signin_url(settings: Settings) -> str:
    return f"{settings.url_for(settings.host, settings.port)}/admin/login"


async def admin_create(settings: Settings, args: argparse.Namespace) -> Output:
    from core.admins import admin_to_json, create_admin

    password = read_new_password(args)
    async with _session(settings, write=True) as session:
        user = await create_admin(session, args.email, password)
    url = admin_signin_url(settings)
    return Output(f"created admin {user.email}\nsign in at {url}", {**admin_to_json(user), "sign_in_url": url})


async def admin_password(settings: Settings, args: argparse.Namespace) -> Output:
    from core.admins import admin_to_json, set_password

    password = read_new_password(args)
    async with _session(settings, write=True) as session:
        user = await set_password(session, args.email, password)
    url = admin_signin_url(settings)
    return Output(f"new password set for {user.email}; their sessions were ended\nsign in at {url}", {**admin_to_json(user), "sign_in_url": url})


async def manifest_slack(settings: Settings, args: argparse.Namespace) -> Output:
    """The Slack app manifest with this deployment's URLs, ready to paste at api.slack.com/apps."""
    from adapters.slack.manifest import build_manifest
    from bot.settings import ConfigError

    socket_mode = bool(getattr(args, "socket_mode", False))
    if not settings.public_url and not socket_mode:
        raise ConfigError("DESKBELL_PUBLIC_URL", "is needed for the manifest's https request URLs (or use --socket-mode)")
    manifest = build_manifest(settings.public_url, socket_mode=socket_mode)
    return Output(json.dumps(manifest, indent=2), manifest)


async def manifest_teams(settings: Settings, args: argparse.Namespace) -> Output:
    """The Teams app package with this deployment's app id and URL, for "Upload a custom app"."""
    from pathlib import Path

    from adapters.teams.manifest import ManifestError, package
    from bot.settings import ConfigError

    app_id = args.app_id or settings.teams_app_id
    public_url = args.public_url or settings.public_url
    try:
        data = package(app_id, public_url)
    except ManifestError as exc:
        flag = {"TEAMS_APP_ID": "--app-id", "DESKBELL_PUBLIC_URL": "--public-url"}[exc.field]
        raise ConfigError(f"{exc.field} (or {flag})", exc.problem) from None
    path = Path(args.output)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError("--output", f"cannot write {path}: {exc.strerror}") from None
    body = {"path": str(path), "app_id": app_id, "public_url": public_url.rstrip("/") if public_url else None, "bytes": len(data)}
    return Output(
        f"wrote {path} ({len(data)} bytes): in Teams, Apps > Manage your apps > Upload an app, then add it to a team",
        body,
    )


async def widget_bind_slack(settings: Settings, args: argparse.Namespace) -> Output:
    """Bind a Slack channel to a widget, joining it (public) or saying to invite the bot (private)."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.channels import bind_from_command_line
    from adapters.slack.errors import BROKEN_HINTS, api_error
    from core.bindings import binding_to_json
    from core.errors import Conflict
    from core.models import WorkspaceInstallation
    from bot.wiring import slack_config

    config = slack_config(settings)
    async with _session(settings, write=True) as session:
        token = config.bot_token
        if token is None and args.workspace:
            token = (
                await session.execute(
                    select(WorkspaceInstallation.bot_token).where(
                        WorkspaceInstallation.platform == "slack", WorkspaceInstallation.workspace_id == args.workspace
                    )
                )
            ).scalar_one_or_none()
        client = AsyncWebClient(token=token, base_url=config.api_url) if token else None
        try:
            widget, binding, check = await bind_from_command_line(
                session, client, widget_ref=args.widget, channel_id=args.channel, workspace_id=args.workspace
            )
        except SlackApiError as exc:
            error = api_error(exc)
            raise Conflict(f"Slack refused: {error}" + (f" ({BROKEN_HINTS[error]})" if error in BROKEN_HINTS else "")) from exc
        except OSError as exc:
            raise Conflict(f"cannot reach Slack at {config.api_url}: {exc}") from exc
    name = f"#{binding.channel_name}" if binding.channel_name else binding.channel_id
    joined = " (joined it)" if check and check.joined else "" if check else " (not checked: no Slack token configured)"
    return Output(f"widget {widget.key} ({widget.name}) now relays chats to {name} in workspace {binding.workspace_id}{joined}", binding_to_json(binding))


async def widget_bind_teams(settings: Settings, args: argparse.Namespace) -> Output:
    """Bind a Teams channel from the command line. ``@deskbell setup`` in the channel does the
    same with the ids Teams sends; this is for scripted set-ups that know them already."""
    from urllib.parse import urlsplit

    from core.bindings import bind_channel, binding_to_json

    parts = urlsplit(args.service_url)
    if parts.scheme != "https" or not parts.netloc:
        raise ValidationFailed.of({"--service-url": "must be an https URL like https://smba.trafficmanager.net/emea/"})
    if not args.channel.startswith("19:"):
        raise ValidationFailed.of({"channel": "Teams channel ids look like 19:...@thread.tacv2"})
    async with _session(settings, write=True) as session:
        widget = await find_widget(session, args.widget)
        binding = await bind_channel(
            session,
            widget.id,
            "teams",
            workspace_id=args.tenant,
            channel_id=args.channel,
            config={"service_url": args.service_url, "tenant_id": args.tenant, "team_id": args.team},
        )
    return Output(
        f"widget {widget.key} ({widget.name}) now relays chats to Teams channel {args.channel}", binding_to_json(binding)
    )


HANDLERS: dict[tuple[str, str], Callable[[Settings, argparse.Namespace], Awaitable[Output]]] = {
    ("widget", "bind-teams"): widget_bind_teams,
    ("manifest", "slack"): manifest_slack,
    ("manifest", "teams"): manifest_teams,
    ("widget", "bind-slack"): widget_bind_slack,
    ("admin", "create"): admin_create,
    ("admin", "password"): admin_password,
    ("widget", "create"): widget_create,
    ("widget", "list"): widget_list,
    ("apikey", "create"): apikey_create,
    ("agent", "create"): agent_create,
    ("agent", "link"): agent_link,
    ("agent", "list"): agent_list,
    ("offline", "list"): offline_list,
}
