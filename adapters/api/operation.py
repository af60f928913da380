"""One entry of the API's route table: the handler and its OpenAPI description together.

Routes are registered *only* from :class:`Operation` objects and the OpenAPI
document is built from the same objects, so an endpoint cannot exist without
its documentation, nor be documented without existing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

_PATH_PARAM = re.compile(r"\{(\w+)\}")


def ref(name: str) -> Schema:
    """A reference to a schema under ``components/schemas``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON null (OpenAPI 3.1 / JSON Schema 2020-12 spelling)."""
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True)
class Param:
    """A query parameter; path parameters are derived from the path template."""

    name: str
    schema: Schema
    description: str


@dataclass(frozen=True)
class Body:
    """A JSON request body."""

    schema: Schema
    description: str


@dataclass(frozen=True)
class Reply:
    """The success response: status, body schema (None for an empty body), description."""

    status: int
    schema: Schema | None
    description: str


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # aiohttp template, identical to the OpenAPI path ("/api/v1/widgets/{id}")
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    reply: Reply
    params: tuple[Param, ...] = ()
    body: Body | None = None
    conflicts: bool = False  # may answer 409
    auth: bool = True
    description: str | None = None

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    def with_path(self, path: str, operation_id: str, description: str) -> "Operation":
        """The same operation served at another path (compatibility aliases)."""
        return replace(self, path=path, operation_id=operation_id, description=description)
