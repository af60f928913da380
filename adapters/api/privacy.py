"""Visitor data requests: a copy of everything stored about an email, or its erasure."""

from __future__ import annotations

from aiohttp import web

from adapters.api.operation import Operation, Param, Reply
from adapters.http import services
from core.privacy import erase_visitor, export_visitor

EMAIL = Param("email", {"type": "string", "format": "email"}, "The email address the visitor gave.")

EXPORT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email", "offline_messages", "conversations"],
    "properties": {
        "email": {"type": "string"},
        "offline_messages": {"type": "array", "items": {"$ref": "#/components/schemas/OfflineMessage"}},
        "conversations": {"type": "array", "items": {"type": "object"}},
    },
}
ERASED = {
    "type": "object",
    "additionalProperties": False,
    "required": ["offline_messages", "conversations"],
    "properties": {"offline_messages": {"type": "integer"}, "conversations": {"type": "integer"}},
}


async def export(request: web.Request) -> web.Response:
    async with services(request).db.read() as session:
        body = await export_visitor(session, request.query.get("email"))
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def erase(request: web.Request) -> web.Response:
    async with services(request).db.write() as session:
        counts = await erase_visitor(session, request.query.get("email"))
    return web.json_response(counts)


OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/privacy/visitor", export, "exportVisitorData",
        "Export everything stored about a visitor, by email", "privacy",
        Reply(200, EXPORT, "Offline messages and conversations (with their visitor-visible messages)."),
        params=(EMAIL,),
    ),
    Operation(
        "DELETE", "/api/v1/privacy/visitor", erase, "eraseVisitorData",
        "Erase a visitor's offline messages and conversations, by email", "privacy",
        Reply(200, ERASED, "How many of each were deleted."),
        params=(EMAIL,),
    ),
]
