"""The ``deskbell`` command line.

Service verbs (``run``, ``web``, ``worker``, ``migrate``) and admin verbs
(``widget``, ``apikey``, ``agent``, ``offline``); every admin verb takes
``--json``. Configuration mistakes end with one line naming the setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from core.errors import DomainError

from bot import admin, admin_deliveries, admin_kb
from bot.logs import configure_logging
from bot.settings import ConfigError, Settings, read_dotenv


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535)")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskbell", description="Website live chat answered from Slack and Microsoft Teams."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    for name, help_text in (
        ("run", "everything in one process: migrate, seed a demo on first start, serve and run jobs"),
        ("web", "serve the widget, API, console and platform endpoints"),
    ):
        p = verbs.add_parser(name, help=help_text)
        p.add_argument("--host", help="address to bind (default: DESKBELL_HOST or 127.0.0.1)")
        p.add_argument("--port", type=_port, help="port (default: PORT, else DESKBELL_PORT, else 8080)")
    p = verbs.add_parser("worker", help="deliver the outbox and run scheduled jobs (one or more per deployment)")
    p.add_argument(
        "--metrics-port", type=_port,
        help="serve /metrics and /healthz on this port (default: DESKBELL_WORKER_METRICS_PORT; off when unset)",
    )
    p.add_argument("--host", help="address for --metrics-port (default: DESKBELL_HOST or 127.0.0.1)")
    verbs.add_parser("migrate", help="create or upgrade the database schema")
    _json_flag(verbs.add_parser("doctor", help="check the deployment end to end and say what to fix"))

    widget = verbs.add_parser("widget", help="manage widgets").add_subparsers(dest="action", required=True)
    p = widget.add_parser("create", help="create a widget and print its embed snippet")
    p.add_argument("name")
    p.add_argument("--settings", help='JSON object of settings, e.g. \'{"hide_when_offline": true}\'')
    _json_flag(p)
    _json_flag(widget.add_parser("list", help="list widgets"))
    p = widget.add_parser("bind-slack", help="relay a widget's chats into a Slack channel (like /chat-setup)")
    p.add_argument("widget", help="widget key or id")
    p.add_argument("channel", help="Slack channel id (C...; in Slack: channel details, bottom)")
    p.add_argument("--workspace", help="Slack workspace id (T...); found with the bot token when left out")
    _json_flag(p)

    p = widget.add_parser(
        "bind-teams", help="relay a widget's chats into a Teams channel (like @deskbell setup in the channel)"
    )
    p.add_argument("widget", help="widget key or id")
    p.add_argument("channel", help="Teams channel id (19:...@thread.tacv2; from the channel's link)")
    p.add_argument("--service-url", required=True, help="the team's Bot Framework service URL, e.g. https://smba.trafficmanager.net/emea/")
    p.add_argument("--tenant", required=True, help="Microsoft Entra tenant id of the team")
    p.add_argument("--team", help="team id (19:...), shown in /readyz and the dashboard")
    _json_flag(p)

    manifest = verbs.add_parser("manifest", help="print app manifests").add_subparsers(dest="action", required=True)
    p = manifest.add_parser("slack", help="the Slack app manifest with DESKBELL_PUBLIC_URL filled in")
    p.add_argument("--socket-mode", action="store_true", help="the variant for Socket Mode (no public URL needed)")
    _json_flag(p)
    p = manifest.add_parser("teams", help="write the Teams app package (manifest.json + icons) to upload in Teams")
    p.add_argument("--output", required=True, metavar="FILE.zip", help="where to write the zip")
    p.add_argument("--app-id", help="the bot's Microsoft App ID (default: TEAMS_APP_ID)")
    p.add_argument("--public-url", help="the https URL Teams reaches deskbell at (default: DESKBELL_PUBLIC_URL)")
    _json_flag(p)

    apikey = verbs.add_parser("apikey", help="manage REST API keys").add_subparsers(dest="action", required=True)
    p = apikey.add_parser("create", help="create an API key (shown once)")
    p.add_argument("name")
    _json_flag(p)

    agent = verbs.add_parser("agent", help="manage agents").add_subparsers(dest="action", required=True)
    p = agent.add_parser("create", help="create an agent and print a console sign-in link")
    p.add_argument("name")
    p.add_argument("--email", required=True)
    _json_flag(p)
    p = agent.add_parser("link", help="print a new console sign-in link for an agent")
    p.add_argument("agent", help="email or id")
    _json_flag(p)
    _json_flag(agent.add_parser("list", help="list agents"))

    offline = verbs.add_parser("offline", help="offline messages").add_subparsers(dest="action", required=True)
    p = offline.add_parser("list", help="list offline messages, newest first")
    p.add_argument("--widget", help="widget key or id")
    p.add_argument("--status", choices=("new", "handled"))
    p.add_argument("--limit", type=int, default=50)
    _json_flag(p)
    admins = verbs.add_parser("admin", help="dashboard admins (/admin)").add_subparsers(dest="action", required=True)
    for name, help_text in (("create", "create a dashboard admin and print the sign-in URL"), ("password", "set a new password for an admin")):
        p = admins.add_parser(name, help=help_text)
        p.add_argument("email")
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input instead of asking")
        _json_flag(p)
    admin_deliveries.add_verbs(verbs, widget, agent, _json_flag)
    admin_kb.add_verbs(verbs, _json_flag)
    return parser


def _worker_metrics_port(args: argparse.Namespace) -> int | None:
    if args.metrics_port:
        return int(args.metrics_port)
    env = {**read_dotenv(Path(".env")), **os.environ}
    raw = env.get("DESKBELL_WORKER_METRICS_PORT", "").strip()
    if not raw:
        return None
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError("DESKBELL_WORKER_METRICS_PORT", str(exc)) from None


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _fail(message: str, code: int = 2) -> int:
    print(f"deskbell: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.verb in {"run", "web", "worker"}:
            from bot.serve import ServeOptions, serve  # the web app and its platforms: not for admin verbs

            options = ServeOptions(
                mode=args.verb,
                host=getattr(args, "host", None) or settings.host,
                port=getattr(args, "port", None) or settings.port,
                metrics_port=_worker_metrics_port(args) if args.verb == "worker" else None,
            )
            return serve(settings, options)
        if args.verb == "migrate":
            admin.migrate(settings)
            print("database is up to date")
            return 0
        if args.verb == "doctor":
            from bot.doctor import report, run_doctor

            text_out, data, code = report(asyncio.run(run_doctor(settings)))
            print(json.dumps(data, indent=2) if args.json else text_out)
            return code
        handlers = {**admin.HANDLERS, **admin_deliveries.HANDLERS, **admin_kb.HANDLERS}
        handler: Callable[[Settings, argparse.Namespace], Awaitable[Any]] = handlers[(args.verb, args.action)]
        result = asyncio.run(handler(settings, args))
    except ConfigError as exc:
        return _fail(str(exc))
    except DomainError as exc:
        return _fail(exc.message, 1)
    except admin.DatabaseUnavailable as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    if getattr(args, "json", False):
        print(json.dumps(result.data, indent=2))
    else:
        print(result.text)
    return int(getattr(result, "exit_code", 0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
