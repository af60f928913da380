"""The REST API's route table and its registration on the application.

``OPERATIONS`` is the single list both the router and the OpenAPI document
are built from.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.api import agents, bindings, conversations, offlinemessages, privacy, widgets
from adapters.api import deliveries, delivery_schemas, notifications, webhooks
from adapters.api import knowledge
from adapters.api.auth import api_key_middleware, protected
from adapters.api.openapi import build_document
from adapters.api.operation import Operation, Reply
from adapters.api.schemas import COMPONENTS

OPENAPI_PATH = "/api/openapi.json"
OPENAPI = web.AppKey("openapi", dict[str, Any])


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI], headers={"Cache-Control": "public, max-age=300"})


OPERATIONS: list[Operation] = [
    *offlinemessages.OPERATIONS,
    *widgets.OPERATIONS,
    *agents.OPERATIONS,
    *conversations.OPERATIONS,
    *privacy.OPERATIONS,
    *bindings.OPERATIONS,
    *webhooks.OPERATIONS,
    *deliveries.OPERATIONS,
    *notifications.OPERATIONS,
    *knowledge.OPERATIONS,
    Operation(
        "GET", OPENAPI_PATH, openapi_document, "getOpenApiDocument", "This document", "meta",
        Reply(200, {"type": "object"}, "The OpenAPI 3.1 document of this API."),
        auth=False,
    ),
]

COMPONENTS.update(delivery_schemas.SCHEMAS)  # the delivery endpoints' schemas, beside the core ones
COMPONENTS.update(knowledge.SCHEMAS)  # the knowledge base and assistant settings


def setup_api_routes(app: web.Application) -> None:
    """Register every operation, the API key check and the OpenAPI document."""
    for op in OPERATIONS:
        if op.auth != protected(op.path):  # the document must say what the middleware does
            raise ValueError(f"{op.method} {op.path}: auth={op.auth} but the API key check says otherwise")
    app[OPENAPI] = build_document(OPERATIONS)
    app.middlewares.append(api_key_middleware)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
