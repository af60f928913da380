"""``/healthz`` (the process answers) and ``/readyz`` (its dependencies answer,
plus ``warnings`` about offline messages that would reach nobody).

Readiness (HTTP 503) depends only on what every request needs: the database
and Redis. The platform bindings (Slack, Teams) and the worker are reported as
checks, and a failing one makes the status ``degraded`` with HTTP 200: when
the worker dies, web processes must stay in the load balancer (visitors'
messages are still stored and acknowledged; the outbox delivers them when a
worker is back), so a warning names the worker instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.http import SERVICES
from core.clock import utcnow
from core.db import Database
from core.deliveries import delivery_warnings
from core.leader import WORKER_STALE_AFTER, Heartbeat, describe_workers, worker_heartbeats


CRITICAL = {"database", "redis"}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, dict[str, str]] = {}
    for name, check in svc.health_checks.items():
        try:
            await asyncio.wait_for(check(), timeout=5)
            checks[name] = {"status": "ok"}
        except Exception as exc:  # any failure means not ready; say which and why
            checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    # Only what every request needs decides readiness; a broken Slack or Teams
    # channel is reported ("degraded") without taking the widgets out of service.
    ready = all(c["status"] == "ok" for name, c in checks.items() if name in CRITICAL)
    healthy = all(c["status"] == "ok" for c in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "degraded" if ready else "error", "checks": checks}
    if checks.get("database", {}).get("status") == "ok":
        body["warnings"] = await _delivery_warnings(svc.db)
    worker = checks.get("worker", {})
    if worker.get("status") == "error":
        body.setdefault("warnings", []).append({"code": "worker_down", "message": worker.get("error", "")})  # type: ignore[union-attr]
    return web.json_response(body, status=200 if ready else 503)


async def _delivery_warnings(db: Database) -> list[dict[str, object]]:
    """Configuration gaps in the offline path (a widget nobody hears from); reported, not fatal."""
    try:
        async with db.read() as session:
            return await asyncio.wait_for(delivery_warnings(session), timeout=5)
    except Exception as exc:  # a report must not break the readiness answer
        return [{"code": "check_failed", "message": f"{type(exc).__name__}: {exc}"[:300]}]


def worker_check(db: Database) -> Callable[[], Awaitable[None]]:
    """For a web process: some worker wrote a heartbeat within the last minute."""

    async def check() -> None:
        async with db.read() as session:
            beats = await worker_heartbeats(session)
        alive, message = describe_workers(beats, utcnow())
        if not alive:
            raise WorkerDown(message)

    return check


def local_worker_check(task: asyncio.Task[None], heartbeat: Heartbeat) -> Callable[[], Awaitable[None]]:
    """For ``deskbell run``: the worker in this very process runs and can write its heartbeat."""

    async def check() -> None:
        if task.done():
            raise WorkerDown("the worker inside this process stopped; see the log, then restart deskbell")
        if heartbeat.last_ok is not None and utcnow() - heartbeat.last_ok > WORKER_STALE_AFTER:
            raise WorkerDown(f"the worker has not written its heartbeat since {heartbeat.last_ok.isoformat()}")

    return check


class WorkerDown(Exception):
    """No worker is delivering."""


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
