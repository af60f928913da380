"""Knowledge base: the entries the AI assistant answers from, per widget.

Add and edit entries, import Markdown/CSV/YAML files (``core.kb_import``),
and try a question to see what the assistant would answer and from which
entry (``services.assistant.ask``, the same path as the API's ``knowledge/ask``).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from adapters.admin import forms
from adapters.admin.auth import SIGNED, action, current, page
from adapters.admin.render import error_page, redirect, render
from adapters.console.auth import same_origin
from adapters.http import services
from core.assistant_config import PROVIDERS
from core.assistant_state import get_config, update_config
from core.errors import ValidationFailed
from core.kb_import import format_of, parse_text
from core.knowledge import create_entry, get_entry, import_entries, list_entries, update_entry
from core.models import Widget
from core.widgets import get_widget

NAV = ("Knowledge base", "/admin/knowledge")
MAX_IMPORT_BYTES = 2 * 1024 * 1024


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


async def _page(request: web.Request, widget_id: int | None, *, status: int = 200, **extra: Any) -> web.Response:
    async with services(request).db.read() as session:
        widgets = list((await session.execute(select(Widget).order_by(Widget.id))).scalars())
        widget = next((w for w in widgets if w.id == widget_id), widgets[0] if widgets else None)
        entries = await list_entries(session, widget.id) if widget else []
        config = (await get_config(session, widget.id)).to_json() if widget else {}
    context: dict[str, Any] = {
        "widgets": widgets, "widget": widget, "entries": entries, "errors": {}, "new": {"title": "", "answer": "", "tags": ""},
        "asked": None, "imported": None, "assistant_ready": services(request).assistant is not None,
        "config": config, "providers": PROVIDERS,
    }
    context.update(extra)
    return render(request, "knowledge.html", status=status, title="Knowledge base", **context)


def _widget_param(request: web.Request) -> int | None:
    raw = request.query.get("widget", "") or request.match_info.get("wid", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


@page
async def show(request: web.Request) -> web.Response:
    return await _page(request, _widget_param(request))


@action
async def add(request: web.Request) -> web.Response:
    wid = int(request.match_info["wid"])
    form = await request.post()
    new = {"title": forms.text(form, "title"), "answer": forms.text(form, "answer"), "tags": forms.text(form, "tags")}
    try:
        async with services(request).db.write() as session:
            await get_widget(session, wid)
            await create_entry(session, wid, {"title": new["title"], "answer": new["answer"], "tags": _tags(new["tags"])})
    except ValidationFailed as exc:
        return await _page(request, wid, status=422, errors=exc.fields or {"title": exc.message}, new=new)
    return redirect(f"/admin/knowledge?widget={wid}", "created")


@page
async def edit_form(request: web.Request) -> web.Response:
    wid, eid = int(request.match_info["wid"]), int(request.match_info["eid"])
    async with services(request).db.read() as session:
        widget = await get_widget(session, wid)
        entry = await get_entry(session, wid, eid)
    values = {"title": entry.title, "answer": entry.answer, "tags": ", ".join(entry.tags or [])}
    return render(request, "knowledge_entry.html", title=entry.title, widget=widget, entry=entry, values=values, errors={})


@action
async def edit(request: web.Request) -> web.Response:
    wid, eid = int(request.match_info["wid"]), int(request.match_info["eid"])
    form = await request.post()
    if forms.text(form, "do") == "delete":
        async with services(request).db.write() as session:
            await session.delete(await get_entry(session, wid, eid))
        return redirect(f"/admin/knowledge?widget={wid}", "deleted")
    values = {"title": forms.text(form, "title"), "answer": forms.text(form, "answer"), "tags": forms.text(form, "tags")}
    try:
        async with services(request).db.write() as session:
            entry = await get_entry(session, wid, eid)
            await update_entry(session, entry, {"title": values["title"], "answer": values["answer"], "tags": _tags(values["tags"])})
    except ValidationFailed as exc:
        async with services(request).db.read() as session:
            widget, entry = await get_widget(session, wid), await get_entry(session, wid, eid)
        return render(request, "knowledge_entry.html", status=422, title=entry.title, widget=widget, entry=entry,
                      values=values, errors=exc.fields or {"title": exc.message})
    return redirect(f"/admin/knowledge?widget={wid}", "saved")


async def import_file(request: web.Request) -> web.Response:
    """A file upload (multipart, up to 2 MB), so it is read here rather than by ``@action``."""
    wid = int(request.match_info["wid"])
    if not same_origin(request):
        return error_page(request, 403, "Refused", "This form was not sent from the dashboard.")
    signed = await current(request)
    if signed is None:
        return redirect("/admin/login")
    request[SIGNED] = signed
    fields: dict[str, str] = {}
    name, raw = "", b""
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":  # type: ignore[union-attr]
            name = Path(part.filename or "upload").name  # type: ignore[union-attr]
            raw = await part.read(decode=False)  # type: ignore[union-attr]
            if len(raw) > MAX_IMPORT_BYTES:
                return await _page(request, wid, status=413, errors={"file": "is larger than 2 MB; split it into several files"})
        elif part.name in {"csrf", "replace"}:  # type: ignore[union-attr]
            fields[part.name] = (await part.text())[:200]  # type: ignore[union-attr, index]
    if not hmac.compare_digest(fields.get("csrf", ""), signed.csrf):
        return error_page(request, 403, "Refused", "The form had expired. Go back, reload and try again.")
    fmt = format_of(Path(name)) if name else None
    if fmt is None:
        return await _page(request, wid, status=422, errors={"file": "choose a .md, .csv, .yaml or .yml file"})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return await _page(request, wid, status=422, errors={"file": "is not UTF-8 text"})
    try:
        drafts = parse_text(text, fmt, name)
        async with services(request).db.write() as session:
            await get_widget(session, wid)
            created, updated = await import_entries(session, wid, drafts, replace=fields.get("replace") == "1")
    except ValidationFailed as exc:
        return await _page(request, wid, status=422, errors={"file": exc.message})
    return await _page(request, wid, imported={"name": name, "created": created, "updated": updated})


@action
async def ask(request: web.Request) -> web.Response:
    wid = int(request.match_info["wid"])
    form = await request.post()
    question = forms.text(form, "question")[:4000]
    svc = services(request)
    if not question:
        return await _page(request, wid, status=422, errors={"question": "write a question a visitor might ask"})
    if svc.assistant is None:
        return await _page(request, wid, status=422, errors={"question": "the assistant is not running in this process"})
    async with svc.db.read() as session:
        widget = await get_widget(session, wid)
    return await _page(request, wid, asked=await svc.assistant.ask(widget, question, wait_for_index=False))


@action
async def assistant_settings(request: web.Request) -> web.Response:
    """The widget's assistant: its name, provider and model, when it hands over, its budget."""
    wid = int(request.match_info["wid"])
    form = await request.post()
    budget = forms.whole_number(form, "daily_token_budget")
    data: dict[str, Any] = {
        "name": forms.text(form, "name"),
        "provider": forms.text(form, "provider") or None,
        "model": forms.text(form, "model") or None,
        "booking_link": forms.text(form, "booking_link") or None,
        "escalation_keywords": _tags(forms.text(form, "escalation_keywords")),
        "escalate_on_low_confidence": forms.checked(form, "escalate_on_low_confidence"),
        "collect_contact": forms.checked(form, "collect_contact"),
        "daily_token_budget": budget,
    }
    try:
        async with services(request).db.write() as session:
            await get_widget(session, wid)
            await update_config(session, wid, data)
    except ValidationFailed as exc:
        return await _page(request, wid, status=422, errors={f"ai_{k}": m for k, m in (exc.fields or {"name": exc.message}).items()})
    return redirect(f"/admin/knowledge?widget={wid}", "saved")


def add_routes(router: web.UrlDispatcher) -> None:
    base = r"/admin/knowledge/{wid:\d{1,18}}"
    router.add_get("/admin/knowledge", show)
    router.add_post(base, add)
    router.add_get(base + r"/{eid:\d{1,18}}", edit_form)
    router.add_post(base + r"/{eid:\d{1,18}}", edit)
    router.add_post(base + "/import", import_file)
    router.add_post(base + "/ask", ask)
    router.add_post(base + "/assistant", assistant_settings)
