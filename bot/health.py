"""``/healthz`` (the process answers) and ``/readyz`` (its dependencies answer,
plus ``warnings`` about offline messages that would reach nobody)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from adapters.http import SERVICES
from core.db import Database
from core.deliveries import delivery_warnings


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
    return web.json_response(body, status=200 if ready else 503)


async def _delivery_warnings(db: Database) -> list[dict[str, object]]:
    """Configuration gaps in the offline path (a widget nobody hears from); reported, not fatal."""
    try:
        async with db.read() as session:
            return await asyncio.wait_for(delivery_warnings(session), timeout=5)
    except Exception as exc:  # a report must not break the readiness answer
        return [{"code": "check_failed", "message": f"{type(exc).__name__}: {exc}"[:300]}]


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
