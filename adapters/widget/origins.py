"""Which web pages may embed a widget: its ``allowed_origins`` setting."""

from __future__ import annotations

from aiohttp import web

from core.models import Widget


def origin_allowed(widget: Widget, origin: str | None) -> bool:
    """An empty list allows any page; otherwise the browser's Origin must be listed.

    Requests without an Origin header (curl, server-to-server) are not from a
    browser page and cannot be cross-site hijacked, so they pass.
    """
    allowed = widget.allowed_origins or []
    if not allowed or "*" in allowed or origin is None:
        return True
    return origin.lower().rstrip("/") in allowed


def cors_headers(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
