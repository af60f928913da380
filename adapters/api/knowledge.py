"""A widget's knowledge base and assistant settings over the API, plus "try a question".

``/api/v1/widgets/{id}/knowledge`` holds the entries the assistant answers
from (CRUD, and bulk import of Markdown, CSV or YAML text);
``.../knowledge/ask`` runs the assistant on a question without a visitor;
``/api/v1/widgets/{id}/assistant`` holds its per-widget settings.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Reply, Schema, nullable, ref
from adapters.api.pages import list_schema, paged
from adapters.http import read_json, services
from core import validation as v
from core.assistant_config import PROVIDERS, AssistantConfig
from core.assistant_state import get_config, update_config
from core.errors import ValidationFailed
from core.kb_import import parse_text
from core.knowledge import (
    MAX_ANSWER,
    MAX_TITLE,
    create_entry,
    entry_to_json,
    get_entry,
    import_entries,
    list_entries,
    update_entry,
)
from core.widgets import get_widget

WHAT = "widget"
ENTRY = "knowledge-base entry"
MAX_IMPORT_BYTES = 2 * 1024 * 1024

# ---------------------------------------------------------------- schemas

_INSTANT: Schema = {"type": "string", "format": "date-time"}
_TAGS: Schema = {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 50}}
_ENTRY_FIELDS: dict[str, Schema] = {
    "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE, "description": "The question the entry answers."},
    "answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER, "description": "Plain text or Markdown; long pages are split at headings."},
    "tags": _TAGS,
    "source": nullable({"type": "string", "maxLength": 300, "description": "Where it came from, e.g. the imported file."}),
}


def _closed(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties) if required is None else required,
        "properties": properties,
    }


_MATCH = _closed(
    {
        "entry_id": {"type": "integer"},
        "title": {"type": "string"},
        "heading": nullable({"type": "string"}),
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "score": {"type": "number"},
    }
)
_ACTION: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["offline_form", "link", "handoff"]}},
    "description": "Extra UI the widget shows under the bot's message (see the widget protocol).",
}
_SETTINGS: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 80},
    "provider": nullable({"enum": list(PROVIDERS), "description": "null: the instance default (DESKBELL_AI_PROVIDER)."}),
    "model": nullable({"type": "string", "maxLength": 100}),
    "booking_link": nullable({"type": "string", "format": "uri", "pattern": "^https?://"}),
    "escalation_keywords": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 60}},
    "escalate_on_low_confidence": {"type": "boolean"},
    "max_unanswered_turns": {"type": "integer", "minimum": 1, "maximum": 20},
    "collect_contact": {"type": "boolean"},
    "max_reply_tokens": {"type": "integer", "minimum": 50, "maximum": 4000},
    "daily_token_budget": {"type": "integer", "minimum": 0},
    "min_confidence": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "replies_per_minute": {"type": "integer", "minimum": 1, "maximum": 120},
}

SCHEMAS: dict[str, Schema] = {
    "KnowledgeEntry": _closed(
        {"id": {"type": "integer", "minimum": 1}, "widget_id": {"type": "integer", "minimum": 1}, **_ENTRY_FIELDS,
         "created_at": _INSTANT, "updated_at": _INSTANT}
    ),
    "KnowledgeEntryCreate": _closed(_ENTRY_FIELDS, required=["title", "answer"]),
    "KnowledgeEntryUpdate": _closed(_ENTRY_FIELDS, required=[]),
    "KnowledgeEntryList": list_schema("KnowledgeEntry"),
    "KnowledgeImport": _closed(
        {
            "format": {"enum": ["markdown", "csv", "yaml"]},
            "content": {"type": "string", "minLength": 1},
            "source": {"type": "string", "maxLength": 300, "description": "A name for the content, kept on each entry."},
            "replace": {"type": "boolean", "description": "Remove entries not in this import (mirror a file)."},
        },
        required=["format", "content"],
    ),
    "KnowledgeImportResult": _closed({"created": {"type": "integer"}, "updated": {"type": "integer"}, "total": {"type": "integer"}}),
    "KnowledgeQuestion": _closed({"question": {"type": "string", "minLength": 1, "maxLength": 4000}}),
    "KnowledgeAnswer": _closed(
        {
            "question": {"type": "string"},
            "kind": {
                "enum": ["answer", "dont_know", "handoff", "offer_form", "ask_email", "ask_name", "lead", "smalltalk", "booking"],
                "description": "What the assistant would do: answer, or say it does not know and escalate.",
            },
            "answer": {"type": "string", "description": "The text the visitor would see."},
            "provider": {"type": "string", "description": "Who phrased it: retrieval, openai, anthropic, gemini..."},
            "reason": nullable({"type": "string", "description": "Why it escalated, when it did."}),
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "matches": {"type": "array", "items": _MATCH},
            "actions": {"type": "array", "items": _ACTION},
            "tokens": {"type": "integer", "minimum": 0},
            "index": {
                "enum": ["hybrid", "lexical"],
                "description": "What searched the knowledge base: keywords and embeddings, or keywords only "
                "(no embedding model, or its index is still being built after a start or an edit).",
            },
        }
    ),
    "AssistantSettings": _closed(_SETTINGS),
    "AssistantSettingsUpdate": _closed(_SETTINGS, required=[]),
}

# ---------------------------------------------------------------- handlers


async def _widget_id(request: web.Request) -> int:
    widget_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        await get_widget(session, widget_id)
    return widget_id


async def list_all(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    limit, before = params.limit(request), params.cursor(request)
    async with services(request).db.read() as session:
        rows = await list_entries(session, widget_id, before_id=before, limit=limit)
    return paged(rows, limit, entry_to_json)


async def create(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    data = await read_json(request)
    async with services(request).db.write() as session:
        entry = await create_entry(session, widget_id, data)
    return web.json_response(entry_to_json(entry), status=201)


async def get(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    entry_id = params.path_id(request, ENTRY, "entry_id")
    async with services(request).db.read() as session:
        entry = await get_entry(session, widget_id, entry_id)
    return web.json_response(entry_to_json(entry))


async def update(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    entry_id = params.path_id(request, ENTRY, "entry_id")
    data = await read_json(request)
    async with services(request).db.write() as session:
        entry = await update_entry(session, await get_entry(session, widget_id, entry_id), data)
    return web.json_response(entry_to_json(entry))


async def delete(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    entry_id = params.path_id(request, ENTRY, "entry_id")
    async with services(request).db.write() as session:
        await session.delete(await get_entry(session, widget_id, entry_id))
    return web.Response(status=204)


async def import_text(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    data = await read_json(request, max_bytes=MAX_IMPORT_BYTES)
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, {"format", "content", "source", "replace"})
    c = v.Checker()
    fmt = c.check("format", v.choice, data.get("format"), options=("markdown", "csv", "yaml"))
    content = c.check("content", v.text, data.get("content"), max_len=MAX_IMPORT_BYTES, strip=False)
    source = c.check("source", v.text, data.get("source"), max_len=300, required=False)
    replace = c.check("replace", v.boolean, data.get("replace", False))
    c.done()
    drafts = parse_text(content, fmt, source or {"markdown": "api.md", "csv": "api.csv", "yaml": "api.yaml"}[fmt])
    async with services(request).db.write() as session:
        created, updated = await import_entries(session, widget_id, drafts, replace=replace)
    return web.json_response({"created": created, "updated": updated, "total": len(drafts)})


async def ask(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, WHAT)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, {"question"})
    c = v.Checker()
    question = c.check("question", v.text, data.get("question"), max_len=4000)
    c.done()
    svc = services(request)
    async with svc.db.read() as session:
        widget = await get_widget(session, widget_id)
    if svc.assistant is None:
        raise ValidationFailed.of({"question": "the assistant is not running in this process"})
    return web.json_response(await svc.assistant.ask(widget, question, wait_for_index=False))


def _settings_json(config: AssistantConfig) -> dict[str, Any]:
    return config.to_json()


async def get_settings(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    async with services(request).db.read() as session:
        config = await get_config(session, widget_id)
    return web.json_response(_settings_json(config))


async def update_settings(request: web.Request) -> web.Response:
    widget_id = await _widget_id(request)
    data = await read_json(request)
    async with services(request).db.write() as session:
        config = await update_config(session, widget_id, data)
    return web.json_response(_settings_json(config))


_KB = "/api/v1/widgets/{id}/knowledge"
_TAG = "knowledge"

OPERATIONS: list[Operation] = [
    Operation(
        "GET", _KB, list_all, "listKnowledgeEntries", "List a widget's knowledge-base entries, newest first", _TAG,
        Reply(200, ref("KnowledgeEntryList"), "A page of entries."),
        params=(params.LIMIT, params.CURSOR),
    ),
    Operation(
        "POST", _KB, create, "createKnowledgeEntry", "Add a knowledge-base entry", _TAG,
        Reply(201, ref("KnowledgeEntry"), "The new entry; the assistant uses it from the next question on."),
        body=Body(ref("KnowledgeEntryCreate"), "The question (title), its answer and optional tags."),
    ),
    Operation(
        "POST", _KB + "/import", import_text, "importKnowledge", "Import entries from Markdown, CSV or YAML text", _TAG,
        Reply(200, ref("KnowledgeImportResult"), "How many entries were created and updated (same title = update)."),
        body=Body(ref("KnowledgeImport"), "The file's text and its format, as `deskbell kb import` reads files."),
    ),
    Operation(
        "POST", _KB + "/ask", ask, "askKnowledge", "Try a question: what the assistant would answer", _TAG,
        Reply(200, ref("KnowledgeAnswer"), "The answer, or the escalation, with the entries that matched."),
        body=Body(ref("KnowledgeQuestion"), "A visitor's question."),
        description="Runs retrieval and the configured provider as for a visitor's first message; stores nothing "
        "but the language model's token usage.",
    ),
    Operation(
        "GET", _KB + "/{entry_id}", get, "getKnowledgeEntry", "Get a knowledge-base entry", _TAG,
        Reply(200, ref("KnowledgeEntry"), "The entry."),
    ),
    Operation(
        "PATCH", _KB + "/{entry_id}", update, "updateKnowledgeEntry", "Change a knowledge-base entry", _TAG,
        Reply(200, ref("KnowledgeEntry"), "The updated entry."),
        body=Body(ref("KnowledgeEntryUpdate"), "The fields to change."),
    ),
    Operation(
        "DELETE", _KB + "/{entry_id}", delete, "deleteKnowledgeEntry", "Delete a knowledge-base entry", _TAG,
        Reply(204, None, "Deleted."),
    ),
    Operation(
        "GET", "/api/v1/widgets/{id}/assistant", get_settings, "getAssistantSettings", "The widget's assistant settings", _TAG,
        Reply(200, ref("AssistantSettings"), "Every setting, defaults included."),
    ),
    Operation(
        "PATCH", "/api/v1/widgets/{id}/assistant", update_settings, "updateAssistantSettings",
        "Change the widget's assistant settings", _TAG,
        Reply(200, ref("AssistantSettings"), "Every setting after the change."),
        body=Body(ref("AssistantSettingsUpdate"), "The settings to change; others keep their value."),
    ),
]
