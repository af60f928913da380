"""Rendering pages: Jinja2 templates with autoescaping, the navigation and notices."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from adapters.admin.auth import SIGNED

TEMPLATES = Path(__file__).parent / "templates"
NAV = web.AppKey("admin_nav", list)  # [(label, href)] in menu order, filled by the page modules

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=True,  # every template, whatever its name
    trim_blocks=True,
    lstrip_blocks=True,
)

# What ``?done=CODE`` after a redirect says; anything else shows nothing (no reflected text).
NOTICES = {
    "saved": "Saved. Open widgets follow at once.",
    "created": "Created.",
    "deleted": "Deleted.",
    "marked": "Updated.",
    "duty": "Duty changed. Widgets follow at once.",
    "pushover": "Pushover key saved.",
    "test_sent": "Test event queued; it shows in the delivery log below.",
    "retried": "Queued for another try.",
    "signed_out": "You are signed out.",
}


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


ENV.filters["when"] = when


def _nav(request: web.Request) -> list[dict[str, Any]]:
    items = request.app.get(NAV, [])
    path = request.path
    out = []
    for label, href in items:
        active = path == href if href == "/admin" else path == href or path.startswith(href + "/")
        out.append({"label": label, "href": href, "active": active})
    return out


def render(request: web.Request, template: str, *, status: int = 200, title: str = "", **context: Any) -> web.Response:
    signed = request.get(SIGNED)
    done = request.query.get("done", "")
    body = ENV.get_template(template).render(
        title=title,
        admin=signed.admin if signed else None,
        csrf=signed.csrf if signed else "",
        nav=_nav(request) if signed else [],
        notice=NOTICES.get(done),
        **context,
    )
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


def redirect(location: str, done: str | None = None) -> web.Response:
    if done:
        location += ("&" if "?" in location else "?") + "done=" + done
    return web.Response(status=303, headers={"Location": location})


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, message=message)


def refresh_page() -> web.Response:
    body = ENV.get_template("refresh.html").render()
    return web.Response(text=body, content_type="text/html", charset="utf-8")
