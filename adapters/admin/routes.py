"""Mounting the dashboard: its pages, static files, security headers and HTML errors.

``PAGES`` is the menu in order; each entry is a module of ``adapters.admin.pages``
with ``NAV`` and ``add_routes``. A page for a new feature is one more module here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from adapters.admin.pages import agents, integrations, knowledge, offline, overview, schedule, signin, webhooks, widgets
from adapters.admin.render import NAV, error_page
from core.errors import DomainError, NotFound

STATIC = Path(__file__).parent / "static"
ASSETS = {"admin.css": "text/css", "admin.js": "application/javascript"}
PAGES = [overview, widgets, schedule, agents, offline, knowledge, webhooks, integrations]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def _ours(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not _ours(request.path):
        return
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def _html_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Dashboard errors are pages, not the JSON the API answers."""
    if not _ours(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except NotFound as exc:
        return error_page(request, 404, "Not found", exc.message)
    except DomainError as exc:
        return error_page(request, 400, "That didn't work", exc.message)
    except web.HTTPNotFound:
        return error_page(request, 404, "Not found", "There is no such page in the dashboard.")


class Assets:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for name, kind in ASSETS.items():
            body = (STATIC / name).read_bytes()
            self.files[name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')

    async def handle(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=headers)


def setup_admin_routes(app: web.Application) -> None:
    """The whole dashboard under ``/admin``."""
    app[NAV] = [page.NAV for page in PAGES if page.NAV]
    app.on_response_prepare.append(_security_headers)
    app.middlewares.append(_html_errors)
    app.router.add_get("/admin/static/{name}", Assets().handle)
    signin.add_routes(app.router)
    for page in PAGES:
        page.add_routes(app.router)
