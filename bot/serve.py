"""Running the service: ``deskbell run``, ``web`` and ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.leader import Heartbeat, LeaderElection
from core.services import Services

from bot import admin, gc_tuning
from bot.app import build_app
from bot.health import local_worker_check, worker_check
from bot.metrics import start_worker_metrics
from bot.migrate import head_revision
from bot.seed import DemoCredentials, seed_demo
from bot.settings import Settings
from bot.wiring import build_dispatcher, build_services, build_slack, build_teams, worker_jobs
from bot.worker import run_worker

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class ServeOptions:
    mode: str  # run | web | worker
    host: str
    port: int
    metrics_port: int | None = None  # worker only: serve /metrics and /healthz on this port


def serve(settings: Settings, options: ServeOptions) -> int:
    """Start and block until SIGINT/SIGTERM; return the exit code."""
    try:
        if options.mode == "run":
            admin.migrate(settings)
        return asyncio.run(_serve(settings, options))
    except admin.DatabaseUnavailable as exc:
        print(f"deskbell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


async def _check_schema(settings: Settings) -> None:
    """Refuse to serve a database this version cannot use, with the fix in the message."""
    db = Database(settings.database_url)
    try:
        async with db.read() as session:
            current = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except (OSError, DBAPIError) as exc:
        raise admin.DatabaseUnavailable(admin.describe_db_error(settings, exc)) from exc
    finally:
        await db.dispose()
    if current != head_revision():
        raise admin.DatabaseUnavailable(
            f"the database schema is at {current or 'nothing'}, this version needs {head_revision()}; run `deskbell migrate`"
        )


async def _serve(settings: Settings, options: ServeOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    public_url = settings.url_for(options.host, options.port)
    await _check_schema(settings)
    try:
        svc = await build_services(settings, public_url=public_url, limits=settings.limits)
    except (OSError, DBAPIError) as exc:
        raise admin.DatabaseUnavailable(admin.describe_db_error(settings, exc)) from exc
    await svc.db.fill_pool()
    pauses = gc_tuning.watch_pauses(svc.metrics)
    gc_tuning.collect_less_often()
    try:
        demo = DemoCredentials(False)
        if options.mode == "run":
            async with svc.db.write() as session:
                demo = await seed_demo(session)
        tasks: list[asyncio.Task[None]] = []
        runner: web.AppRunner | None = None
        slack = build_slack(svc, settings)  # None unless SLACK_* is configured
        teams = build_teams(svc, settings)  # None unless TEAMS_APP_ID (or TEAMS_LOCAL_DEV) is set
        if options.mode in {"run", "web"}:
            runner = web.AppRunner(build_app(svc, slack=slack, teams=teams), shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, options.host, options.port, backlog=settings.listen_backlog)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                what = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
                print(f"deskbell: --port/PORT: {options.host}:{options.port} {what}", file=sys.stderr)
                return 2
            print(_banner(options, public_url, demo), flush=True)
        metrics_runner: web.AppRunner | None = None
        if options.mode in {"run", "worker"}:
            dispatcher = build_dispatcher(svc, settings, slack=slack, teams=teams)
            heartbeat = Heartbeat(svc.db, options.mode)
            worker_task = asyncio.create_task(run_worker(svc.db, dispatcher, stop, heartbeat), name="worker")
            tasks.append(worker_task)
            if svc.assistant is not None:  # knowledge-base indexes built before the first question needs them
                tasks.append(asyncio.create_task(_warm_up_then_freeze(svc, stop), name="kb-warm-up"))
            if options.mode == "run":
                svc.health_checks["worker"] = local_worker_check(worker_task, heartbeat)
            if options.mode == "worker" and options.metrics_port:
                try:
                    metrics_runner = await start_worker_metrics(svc, options.host, options.metrics_port)
                except OSError as exc:
                    stop.set()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    what = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
                    print(f"deskbell: --metrics-port/DESKBELL_WORKER_METRICS_PORT: {options.host}:{options.metrics_port} {what}", file=sys.stderr)
                    return 2
            # Presence polling must run once per deployment: only the worker holding the lease runs it,
            # and a standby takes over within ~25 s when that worker dies.
            leader_jobs = worker_jobs(slack=slack, teams=teams)
            if leader_jobs:
                election = LeaderElection(svc.db, "worker-jobs")
                tasks.append(asyncio.create_task(election.run(leader_jobs, stop), name="leader-jobs"))
            if options.mode == "worker":
                where = f"; metrics on http://{options.host}:{options.metrics_port}/metrics" if metrics_runner else ""
                print(f"deskbell worker running{where}; Ctrl+C to stop", flush=True)
        else:
            svc.health_checks["worker"] = worker_check(svc.db)  # some `deskbell worker` beats
        gc_tuning.freeze_long_lived("start-up")
        await stop.wait()
        log.info("shutting down")
        if runner is not None:
            await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        for task in tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=SHUTDOWN_TIMEOUT_S)
        return 0
    finally:
        pauses.stop()
        await svc.close()


async def _warm_up_then_freeze(svc: Services, stop: asyncio.Event) -> None:
    """Build the knowledge-base indexes, then keep the garbage collector off them (bot/gc_tuning.py)."""
    assert svc.assistant is not None
    await svc.assistant.warm_up(stop)
    if not stop.is_set():
        gc_tuning.freeze_long_lived("knowledge-base indexes")


def _banner(options: ServeOptions, public_url: str, demo: DemoCredentials) -> str:
    lines = [
        f"deskbell {options.mode} is listening on http://{options.host}:{options.port}",
        f"  demo page       {public_url}/",
        f"  agent console   {public_url}/console",
        f"  dashboard       {public_url}/admin  (first admin: deskbell admin create EMAIL)",
        f"  REST API        {public_url}/api/v1  (OpenAPI: {public_url}/api/openapi.json)",
        f"  health          {public_url}/healthz  {public_url}/readyz",
    ]
    if demo.widget_key:
        lines.append(f"  demo widget key {demo.widget_key}")
        lines.append(f'  embed           <script src="{public_url}/widget.js" data-widget="{demo.widget_key}" async></script>')
    if demo.console_link_token:
        lines.append(f"  console sign-in {public_url}/console/login?token={demo.console_link_token}")
    if demo.api_key:
        lines.append(f"  API key         {demo.api_key}   (shown once; store it now)")
    elif demo.widget_key:
        lines.append("  API key         printed on the first start; make another: deskbell apikey create NAME")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)
