"""Widgets: the list, creating one, and the settings form with the embed snippet.

Every change goes through ``core.widgets`` and publishes ``WIDGET_CHANGED``
after its transaction, so open widgets on visitors' pages follow at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select

from adapters.admin import forms
from adapters.admin.auth import action, page
from adapters.admin.render import redirect, render
from adapters.http import services
from core import events as ev
from core.availability import WidgetStatus
from core.errors import ValidationFailed
from core.models import Widget
from core.widgets import DEFAULTS, create_widget, get_widget, update_widget

NAV = ("Widgets", "/admin/widgets")
RETENTION = "retention_days" in DEFAULTS  # per-widget data retention (core/privacy.py)
TEXTS = ("online_tab_text", "offline_tab_text", "offline_message")

# Ready-made wordings; an empty field means "the default in the visitor's language".
PRESETS: list[dict[str, str]] = [
    {
        "id": "friendly",
        "label": "Friendly (default)",
        "online_tab_text": "Chat with us",
        "offline_tab_text": "Leave a message",
        "offline_message": "We're away right now. Leave a message and we'll get back to you by email.",
    },
    {
        "id": "support",
        "label": "Support desk",
        "online_tab_text": "Questions? We're online",
        "offline_tab_text": "Contact support",
        "offline_message": "Our support team is offline. Send us your question and we'll reply by email within one business day.",
    },
    {
        "id": "sales",
        "label": "Sales",
        "online_tab_text": "Talk to sales",
        "offline_tab_text": "Request a call back",
        "offline_message": "Our sales team is away. Leave your email and what you need, and we'll get back to you with an offer.",
    },
    {
        "id": "short",
        "label": "Short",
        "online_tab_text": "Chat",
        "offline_tab_text": "Message us",
        "offline_message": "We're offline. Leave a message.",
    },
]

REASONS = {
    None: "online",
    "disabled": "switched off",
    "outside_schedule": "outside business hours",
    "no_agent_available": "no agent available",
}
MODES = {"live": "live chat", "ai": "AI assistant", "form": "offline form", "hidden": "hidden"}


def describe_status(status: WidgetStatus) -> dict[str, Any]:
    return {
        "online": status.online,
        "label": ("Online" if status.online else "Offline") + ("" if status.online else f" — {REASONS.get(status.reason, status.reason)}"),
        "shows": MODES.get(status.mode, status.mode),
        "agents": status.agents_available,
        "next_change_at": status.next_change_at,
        "next_open_at": status.next_open_at,
    }


# ---------------------------------------------------------------- colours (WCAG)


def _rgb(color: str) -> tuple[int, int, int] | None:
    c = color.lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    if len(c) != 6:
        return None
    try:
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    except ValueError:
        return None


def _luminance(rgb: tuple[int, int, int]) -> float:
    def lin(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float | None:
    """WCAG contrast ratio of two hex colours (1 to 21)."""
    ra, rb = _rgb(a), _rgb(b)
    if ra is None or rb is None:
        return None
    hi, lo = sorted((_luminance(ra), _luminance(rb)), reverse=True)
    return round((hi + 0.05) / (lo + 0.05), 2)


# ---------------------------------------------------------------- form <-> settings


def embed_snippet(request: web.Request, key: str) -> str:
    base = services(request).public_url or f"{request.scheme}://{request.host}"
    return f'<script src="{base}/widget.js" data-widget="{key}" async></script>'


def form_values(widget: Widget) -> dict[str, Any]:
    """What the form shows: default texts as empty fields (the visitor's language is used)."""
    colors = {**DEFAULTS["colors"], **(widget.colors or {})}
    return {
        "name": widget.name,
        "enabled": widget.enabled,
        **{t: "" if getattr(widget, t) == DEFAULTS[t] else getattr(widget, t) for t in TEXTS},
        "primary": _six(colors.get("primary", "#2563eb")),
        "text": _six(colors.get("text", "#ffffff")),
        "position": widget.position,
        "offline_form": widget.offline_form,
        "ai_enabled": widget.ai_enabled,
        "ai_always": widget.ai_always,
        "hide_when_offline": widget.hide_when_offline,
        "allowed_origins": "\n".join(widget.allowed_origins or []),
        "notify_emails": "\n".join(widget.notify_emails or []),
        "session_timeout_min": max(1, widget.session_timeout_s // 60),
        "retention_days": "" if getattr(widget, "retention_days", None) is None else widget.retention_days,
    }


def _six(color: str) -> str:
    """``#abc`` as ``#aabbcc``: what ``<input type=color>`` shows."""
    c = color.lstrip("#")
    return "#" + ("".join(ch * 2 for ch in c) if len(c) == 3 else c).lower()


def posted_values(form: MultiDictProxy[Any]) -> dict[str, Any]:
    return {
        "name": forms.text(form, "name"),
        "enabled": forms.checked(form, "enabled"),
        **{t: forms.text(form, t) for t in TEXTS},
        "primary": forms.text(form, "primary"),
        "text": forms.text(form, "text"),
        "position": forms.text(form, "position"),
        "offline_form": forms.checked(form, "offline_form"),
        "ai_enabled": forms.checked(form, "ai_enabled"),
        "ai_always": forms.checked(form, "ai_always"),
        "hide_when_offline": forms.checked(form, "hide_when_offline"),
        "allowed_origins": forms.text(form, "allowed_origins"),
        "notify_emails": forms.text(form, "notify_emails"),
        "session_timeout_min": forms.text(form, "session_timeout_min"),
        "retention_days": forms.text(form, "retention_days"),
    }


def settings_from(values: dict[str, Any], form: MultiDictProxy[Any]) -> dict[str, Any]:
    """The settings dict for ``core.widgets.update_widget``; core validates every field."""
    minutes = forms.whole_number(form, "session_timeout_min")
    retention: dict[str, Any] = {}
    if RETENTION:  # empty: keep visitor data until someone deletes it
        retention["retention_days"] = forms.whole_number(form, "retention_days") if values["retention_days"] else None
    return {
        **retention,
        "name": values["name"],
        "enabled": values["enabled"],
        **{t: values[t] or DEFAULTS[t] for t in TEXTS},
        "colors": {"primary": values["primary"], "text": values["text"]},
        "position": values["position"],
        "offline_form": values["offline_form"],
        "ai_enabled": values["ai_enabled"],
        "ai_always": values["ai_always"],
        "hide_when_offline": values["hide_when_offline"],
        "allowed_origins": forms.lines(form, "allowed_origins"),
        "notify_emails": forms.lines(form, "notify_emails"),
        "session_timeout_s": minutes * 60 if isinstance(minutes, int) else minutes,
    }


FIELD_FOR = {"colors": "primary", "session_timeout_s": "session_timeout_min"}


def _errors(exc: ValidationFailed) -> dict[str, str]:
    return {FIELD_FOR.get(k, k): v for k, v in (exc.fields or {"name": exc.message}).items()}


# ---------------------------------------------------------------- handlers


def widget_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@page
async def list_widgets(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.db.read() as session:
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
    rows = [{"widget": w, "status": describe_status(await svc.watcher.status_of(w))} for w in widgets]
    return render(request, "widgets.html", title="Widgets", rows=rows, errors={}, new_name="")


@action
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    name = forms.text(form, "name")
    svc = services(request)
    try:
        async with svc.db.write() as session:
            widget = await create_widget(session, {"name": name})
    except ValidationFailed as exc:
        async with svc.db.read() as session:
            widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
        rows = [{"widget": w, "status": describe_status(await svc.watcher.status_of(w))} for w in widgets]
        return render(request, "widgets.html", status=422, title="Widgets", rows=rows, errors=_errors(exc), new_name=name)
    await svc.bus.publish(ev.WIDGET_CHANGED, {"widget_id": widget.id})
    return redirect(f"/admin/widgets/{widget.id}", "created")


async def _edit_page(
    request: web.Request, widget: Widget, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> web.Response:
    svc = services(request)
    return render(
        request,
        "widget_edit.html",
        status=status,
        title=widget.name,
        widget=widget,
        values=values,
        errors=errors,
        presets=PRESETS,
        defaults={t: DEFAULTS[t] for t in TEXTS},
        contrast=contrast(values["primary"], values["text"]),
        embed=embed_snippet(request, widget.key),
        status_info=describe_status(await svc.watcher.status_of(widget)),
        retention=RETENTION,
    )


@page
async def edit(request: web.Request) -> web.Response:
    async with services(request).db.read() as session:
        widget = await get_widget(session, widget_id(request))
    values = form_values(widget)
    preset = next((p for p in PRESETS if p["id"] == request.query.get("preset")), None)
    if preset is not None:  # "Use these texts" without JavaScript: fill the form, save nothing yet
        values.update({t: "" if preset[t] == DEFAULTS[t] else preset[t] for t in TEXTS})
    return await _edit_page(request, widget, values, {})


@action
async def save(request: web.Request) -> web.Response:
    svc = services(request)
    form = await request.post()
    values = posted_values(form)
    wid = widget_id(request)
    try:
        async with svc.db.write() as session:
            widget = await update_widget(session, await get_widget(session, wid), settings_from(values, form))
    except ValidationFailed as exc:
        async with svc.db.read() as session:
            widget = await get_widget(session, wid)
        return await _edit_page(request, widget, values, _errors(exc), status=422)
    await svc.bus.publish(ev.WIDGET_CHANGED, {"widget_id": wid})
    return redirect(f"/admin/widgets/{wid}", "saved")


@action
async def delete(request: web.Request) -> web.Response:
    svc = services(request)
    wid = widget_id(request)
    async with svc.db.write() as session:
        await session.delete(await get_widget(session, wid))
    await svc.bus.publish(ev.WIDGET_CHANGED, {"widget_id": wid})
    return redirect("/admin/widgets", "deleted")


def add_routes(router: web.UrlDispatcher) -> None:
    item = r"/admin/widgets/{id:\d{1,18}}"
    router.add_get("/admin/widgets", list_widgets)
    router.add_post("/admin/widgets", create)
    router.add_get(item, edit)
    router.add_post(item, save)
    router.add_post(item + "/delete", delete)
