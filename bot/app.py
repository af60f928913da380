"""The aiohttp Application: routes of every adapter plus health and the demo page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path

from typing import TYPE_CHECKING

from aiohttp import web

from adapters.admin.routes import setup_admin_routes
from adapters.api.routes import setup_api_routes
from adapters.console.routes import setup_console_routes
from adapters.http import SERVICES, json_error_middleware
from adapters.widget.hub import WidgetHub
from adapters.widget.routes import setup_widget_routes
from adapters.widget.socket import HUB
from core.services import Services

from bot.health import setup_health_routes
from bot.request_ids import request_id_middleware
from bot.metrics import setup_metrics

if TYPE_CHECKING:  # the platform SDKs are heavy: import them only where a platform is configured
    from adapters.slack.adapter import SlackAdapter
    from adapters.teams.adapter import TeamsAdapter

STATIC = Path(__file__).parent / "static"
# The demo page runs our widget only: its script, its API and its socket.
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'"
)
JSON_PREFIXES = ("/api/", "/widget/", "/offlinemessages", "/console/api/", "/healthz", "/readyz")


def build_app(svc: Services, *, slack: SlackAdapter | None = None, teams: TeamsAdapter | None = None) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, json_error_middleware(JSON_PREFIXES)],
        client_max_size=svc.limits.max_body_bytes,
    )
    app[SERVICES] = svc
    app[HUB] = WidgetHub(svc)
    setup_widget_routes(app)
    setup_health_routes(app)
    setup_metrics(app)
    setup_api_routes(app)
    setup_console_routes(app)
    setup_admin_routes(app)  # the dashboard at /admin
    if slack is not None:
        slack.setup_routes(app)  # POST /slack/events, GET /slack/install, /slack/oauth_redirect
    if teams is not None:
        teams.setup_routes(app)  # POST /api/messages (Bot Framework activities)
    app.router.add_get("/", demo_page)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    await svc.watcher.refresh()
    task = asyncio.create_task(svc.watcher.run(), name="status-watcher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()


async def demo_page(request: web.Request) -> web.Response:
    """A page with the first widget embedded, so a newcomer sees it work."""
    from sqlalchemy import select

    from core.models import Widget

    svc = request.app[SERVICES]
    async with svc.db.read() as session:
        widget = (await session.execute(select(Widget).order_by(Widget.id).limit(1))).scalar_one_or_none()
    html = (STATIC / "demo.html").read_text()
    key = widget.key if widget else ""
    base = svc.public_url or f"{request.scheme}://{request.host}"
    snippet = f'<script src="{base}/widget.js" data-widget="{key}" async></script>'
    html = html.replace("{{SNIPPET}}", escape(snippet))
    html = html.replace("{{WIDGET_KEY}}", escape(key)).replace("{{BASE}}", escape(base))
    return web.Response(text=html, content_type="text/html", headers={"Content-Security-Policy": DEMO_CSP})
