"""``deskbell kb``: fill a widget's knowledge base from files and try questions on it.

    deskbell kb import FILE_OR_FOLDER --widget KEY [--replace]
    deskbell kb ask "question" --widget KEY
    deskbell kb list --widget KEY
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.kb_import import read_path
from core.knowledge import entry_to_json, import_entries, list_entries
from core.widgets import find_widget

from bot.admin import DatabaseUnavailable, Output, _session, describe_db_error
from bot.settings import Settings


def add_verbs(verbs: Any, json_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    kb = verbs.add_parser("kb", help="a widget's knowledge base (what the AI assistant answers from)")
    actions = kb.add_subparsers(dest="action", required=True)
    p = actions.add_parser("import", help="import a Markdown file or folder, a CSV or a YAML file")
    p.add_argument("path", metavar="FILE", help=".md/.markdown, .csv, .yaml/.yml, or a folder of them")
    p.add_argument("--widget", required=True, help="widget key or id")
    p.add_argument("--replace", action="store_true", help="also remove entries that are not in FILE")
    json_flag(p)
    p = actions.add_parser("ask", help="show what the assistant would answer, and which entries matched")
    p.add_argument("question")
    p.add_argument("--widget", required=True, help="widget key or id")
    json_flag(p)
    p = actions.add_parser("list", help="list the entries")
    p.add_argument("--widget", required=True, help="widget key or id")
    json_flag(p)


async def kb_import(settings: Settings, args: argparse.Namespace) -> Output:
    drafts = read_path(Path(args.path))  # parse everything before touching the database
    async with _session(settings, write=True) as session:
        widget = await find_widget(session, args.widget)
        created, updated = await import_entries(session, widget.id, drafts, replace=args.replace)
    data = {"widget_id": widget.id, "created": created, "updated": updated, "total": len(drafts)}
    unchanged = len(drafts) - created - updated
    return Output(
        f"imported {len(drafts)} entries into {widget.name!r}: {created} new, {updated} updated, {unchanged} unchanged",
        data,
    )


async def kb_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        widget = await find_widget(session, args.widget)
        entries = await list_entries(session, widget.id)
    rows = [entry_to_json(e) for e in reversed(entries)]
    lines = [f"{r['id']:>5}  {r['title']}" for r in rows]
    return Output("\n".join(lines) or f"no entries yet: deskbell kb import FILE --widget {widget.key}", {"items": rows})


async def kb_ask(settings: Settings, args: argparse.Namespace) -> Output:
    # The assistant, its model and the AI providers' SDKs load only for this verb.
    from adapters.embeddings import default_embedder
    from adapters.llm.factory import build_providers
    from core.assistant_service import AssistantService
    from core.chat import ChatService
    from core.events import LocalBus
    from core.status import StatusWatcher

    db = Database(settings.database_url)
    bus = LocalBus()
    providers = build_providers(settings.ai)
    assistant = AssistantService(
        db, bus, ChatService(db, bus), StatusWatcher(db, bus), providers, timeout_s=settings.ai.timeout_s
    )
    assistant.indexes.use_embedder(default_embedder())  # answer as the running service does
    try:
        async with db.read() as session:
            widget = await find_widget(session, args.widget)
        result = await assistant.ask(widget, args.question)
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_db_error(settings, exc)) from exc
    finally:
        await providers.close()
        await db.dispose()
    head = f"{result['kind']} ({result['provider']}, confidence {result['confidence']:.2f})"
    if result["reason"]:
        head += f", escalates: {result['reason']}"
    lines = [head, result["answer"], "", "matches:"]
    lines += [f"  {m['confidence']:.2f}  {m['title']}" + (f" — {m['heading']}" if m["heading"] else "") for m in result["matches"]]
    if not result["matches"]:
        lines.append("  (none)")
    return Output("\n".join(lines), result)


HANDLERS: dict[tuple[str, str], Callable[[Settings, argparse.Namespace], Awaitable[Output]]] = {
    ("kb", "import"): kb_import,
    ("kb", "ask"): kb_ask,
    ("kb", "list"): kb_list,
}
