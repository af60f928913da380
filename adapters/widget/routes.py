"""Widget HTTP endpoints: the embed script, the config and the offline form."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.http import client_ip, error_response, read_json, services
from adapters.widget.origins import cors_headers, origin_allowed
from adapters.widget.socket import HUB, widget_socket
from core import events as ev
from core.errors import NotFound, RateLimited
from core.form_batches import store_submission, store_submissions
from core.group_commit import Bulk
from core.models import OfflineMessage, Widget
from core.offline import SpamRejected, clean_submission, offline_message_to_json
from core.widgets import DEFAULTS as WIDGET_DEFAULTS
from core.widgets import get_widget_by_key

STATIC = Path(__file__).parent / "static"
THANKS = "Thanks! We got your message and will get back to you by email."
TEXT_FIELDS = ("online_tab_text", "offline_tab_text", "offline_message")


class StaticScript:
    """``widget.js`` read once, gzipped once, served with an ETag and caching."""

    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'

    async def handle(self, request: web.Request) -> web.Response:
        headers = {
            "Content-Type": "application/javascript; charset=utf-8",
            "Cache-Control": "public, max-age=300, stale-while-revalidate=86400",
            "ETag": self.etag,
            "Vary": "Accept-Encoding",
            "Access-Control-Allow-Origin": "*",
        }
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=self.gzipped, headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=self.body, headers=headers)


async def _widget(request: web.Request) -> Widget:
    """From the hub's cache of widgets by key (shared with the sockets, dropped on WIDGET_CHANGED)."""
    hub = request.app.get(HUB)
    if hub is not None:
        return await hub.widget(request.match_info["key"])
    async with services(request).db.read() as session:
        return await get_widget_by_key(session, request.match_info["key"])


def _ws_url(request: web.Request, base: str, key: str) -> str:
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}/widget/{key}/ws"


def _base(request: web.Request) -> str:
    svc = services(request)
    return svc.public_url or f"{request.scheme}://{request.host}"


async def widget_config(request: web.Request) -> web.Response:
    try:
        widget = await _widget(request)
    except NotFound:
        return error_response(404, "not_found", "unknown widget key")
    if not origin_allowed(widget, request.headers.get("Origin")):
        return error_response(403, "origin_not_allowed", "this page's origin may not use this widget")
    status = await services(request).watcher.status_of(widget)
    base = _base(request)
    body = {
        "key": widget.key,
        "name": widget.name,
        "status": status.to_json(),
        "texts": {
            "online_tab_text": widget.online_tab_text,
            "offline_tab_text": widget.offline_tab_text,
            "offline_message": widget.offline_message,
        },
        # Texts the admin wrote; the others are defaults the widget shows in the visitor's language.
        "custom_texts": [name for name in TEXT_FIELDS if getattr(widget, name) != WIDGET_DEFAULTS[name]],
        "offline_form": widget.offline_form,
        "ai_enabled": widget.ai_enabled,
        "hide_when_offline": widget.hide_when_offline,
        "colors": widget.colors,
        "position": widget.position,
        "ws_url": _ws_url(request, base, widget.key),
        "offline_messages_url": f"{base}/widget/{widget.key}/offline-messages",
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=cors_headers(request))


async def post_offline_message(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        widget = await _widget(request)
    except NotFound:
        return error_response(404, "not_found", "unknown widget key")
    if not origin_allowed(widget, request.headers.get("Origin")):
        return error_response(403, "origin_not_allowed", "this page's origin may not use this widget")
    if not widget.enabled:
        return error_response(403, "widget_disabled", "this chat is switched off")
    data = await read_json(request, max_bytes=32 * 1024)
    wait = await svc.rate_limiter.hit(f"offline:{client_ip(request)}", svc.limits.offline_per_ip_per_hour, 3600)
    if wait is not None:
        minutes = max(1, round(wait / 60))
        raise RateLimited(
            f"You've sent several messages already. Please try again in about {minutes} minute{'s' if minutes > 1 else ''}.",
            retry_after=wait,
        )
    try:
        fields = clean_submission(data)  # before queueing: a bad form never joins a batch
    except SpamRejected:
        return web.json_response({"id": None, "status": "new", "message": THANKS}, status=201)

    async def store(session: AsyncSession) -> tuple[OfflineMessage, int]:
        return await store_submission(session, widget, fields)

    # The message and every delivery it owes, or nothing; committed (with other
    # submissions queued meanwhile, stored together) before the 201.
    row, planned = await svc.db.write_batched(store, bulk=Bulk(store_submissions, (widget, fields)))
    stored = offline_message_to_json(row)
    if planned:
        svc.chat.outbox_enqueued()  # coalesced with other submissions', not awaited
    await svc.bus.publish(ev.OFFLINE_MESSAGE_CREATED, {"widget_id": widget.id, "offline_message": stored})
    return web.json_response({"id": row.id, "status": row.status, "message": THANKS}, status=201)


async def _add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """Widget endpoints are called from other sites' pages, errors included."""
    if request.path.startswith("/widget/") and not request.path.endswith("/ws"):
        for name, value in cors_headers(request).items():
            response.headers.setdefault(name, value)


def setup_widget_routes(app: web.Application) -> None:
    app.on_response_prepare.append(_add_cors)
    script = StaticScript(STATIC / "widget.js")
    app.router.add_get("/widget.js", script.handle)
    app.router.add_get("/widget/{key}/config", widget_config)
    app.router.add_route("OPTIONS", "/widget/{key}/config", preflight)
    app.router.add_post("/widget/{key}/offline-messages", post_offline_message)
    app.router.add_route("OPTIONS", "/widget/{key}/offline-messages", preflight)
    app.router.add_get("/widget/{key}/ws", widget_socket)
