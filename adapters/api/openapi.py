"""The OpenAPI 3.1 document, generated from the route table and the schemas.

Error responses are derived from what an operation can actually do (a body
can be malformed or too large, an id can be unknown, a query parameter can be
invalid), so they cannot be forgotten on a new endpoint.
"""

from __future__ import annotations

from typing import Any

from adapters.api.operation import Operation, Schema, ref
from adapters.api.schemas import COMPONENTS

TITLE = "deskbell REST API"
VERSION = "1.0.0"

# name -> (status, description); each answers an Error body.
ERRORS: dict[str, tuple[int, str]] = {
    "BadRequest": (400, "The body is not valid JSON."),
    "Unauthorized": (401, "No API key, or an unknown or revoked one."),
    "NotFound": (404, "Nothing has this id."),
    "Conflict": (409, "The change conflicts with existing data (e.g. a duplicate email)."),
    "TooLarge": (413, "The body is larger than the server accepts."),
    "UnsupportedMediaType": (415, "The body is not sent as application/json."),
    "ValidationFailed": (422, "A field or parameter is invalid; `fields` names each one."),
}


def _error_response(name: str) -> dict[str, Any]:
    status, description = ERRORS[name]
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Always `Bearer realm="deskbell"`.'}
        }
    return response


def _errors_of(op: Operation) -> list[str]:
    names = []
    if op.body is not None:
        names += ["BadRequest", "TooLarge", "UnsupportedMediaType"]
    if op.auth:
        names.append("Unauthorized")
    if op.path_params:
        names.append("NotFound")
    if op.conflicts:
        names.append("Conflict")
    if op.body is not None or op.params:
        names.append("ValidationFailed")
    return sorted(names, key=lambda n: ERRORS[n][0])


PATH_PARAMS: dict[str, dict[str, Any]] = {
    "id": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "Numeric id."},
    "platform": {"schema": {"enum": ["slack", "teams"]}, "description": "The chat platform."},
}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, **PATH_PARAMS.get(name, {"schema": {"type": "string"}})}
        for name in op.path_params
    ]
    out += [
        {"name": p.name, "in": "query", "required": False, "schema": p.schema, "description": p.description}
        for p in op.params
    ]
    return out


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.reply.description}
    if op.reply.schema is not None:
        success["content"] = {"application/json": {"schema": op.reply.schema}}
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(op.reply.status): success,
            **{str(ERRORS[name][0]): {"$ref": f"#/components/responses/{name}"} for name in _errors_of(op)},
        },
    }
    if op.description:
        doc["description"] = op.description
    parameters = _parameters(op)
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "description": op.body.description,
            "content": {"application/json": {"schema": op.body.schema}},
        }
    if not op.auth:
        doc["security"] = []
    return doc


def build_document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry = paths.setdefault(op.path, {})
        method = op.method.lower()
        if method in entry:
            raise ValueError(f"{op.method} {op.path} is in the route table twice")
        entry[method] = _operation(op)
    schemas: dict[str, Schema] = dict(COMPONENTS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "Configure widgets and agents and read offline messages and conversations. "
                'Lists answer `{"items": [...], "next_cursor": ...}`, newest first unless stated; '
                "pass `next_cursor` back as `cursor` for the next page. Errors answer "
                '`{"error": {"code", "message", "fields"?}}`. Times are ISO-8601 with offset, in UTC.'
            ),
        },
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in operations)],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `deskbell apikey create`.",
                }
            },
            "schemas": schemas,
            "responses": {name: _error_response(name) for name in ERRORS},
        },
    }
