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
    for name, check in svc.health_checks.items():
        try:
            await asyncio.wait_for(check(), timeout=5)
            checks[name] = {"status": "ok"}
        except Exception as exc:  # any failure means not ready; say which and why
            checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    ready = all(c["status"] == "ok" for c in checks.values())
    return web.json_response({"status": "ok" if ready else "error", "checks": checks}, status=200 if ready else 503)


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
