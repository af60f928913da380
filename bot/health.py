"""``/healthz`` (the process answers) and ``/readyz`` (its dependencies answer)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from adapters.http import SERVICES


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, dict[str, str]] = {}
    try:
        await asyncio.wait_for(svc.db.ping(), timeout=5)
        checks["database"] = {"status": "ok", "dialect": svc.db.dialect}
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = {"status": "error", "error": type(exc).__name__}
    ready = all(c["status"] == "ok" for c in checks.values())
    return web.json_response({"status": "ok" if ready else "error", "checks": checks}, status=200 if ready else 503)


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
