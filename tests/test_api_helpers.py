"""Shared pieces of the REST API tests: an authenticated client that checks every
response against the OpenAPI document, and small data builders.

(Named ``test_api_*`` only so it sits with the API tests; it holds no tests.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import update

from adapters.api.openapi import build_document
from adapters.api.routes import OPERATIONS
from core.agents import create_agent
from core.apikeys import create_api_key
from core.models import Agent, OfflineMessage, Widget
from core.offline import store_offline_message
from core.services import Services
from core.widgets import create_widget

DOC_URI = "urn:deskbell:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The OpenAPI document as a validator of real responses."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry = Registry().with_resource(
            DOC_URI, Resource(contents=document, specification=DRAFT202012)
        )
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in document["paths"]
        ]

    def template(self, path: str) -> str | None:
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return None

    def response_pointer(self, method: str, template: str, status: int) -> str | None:
        """JSON pointer to the schema of this response, or None when it has no body."""
        operation = self.document["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not documented"
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template} answered {status}, which is not documented"
        base = ("paths", template, method.lower(), "responses", str(status))
        response = responses[str(status)]
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[-1]
            base, response = ("components", "responses", name), self.document["components"]["responses"][name]
        if "content" not in response:
            return None
        return _pointer(*base, "content", "application/json", "schema")

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """Assert ``body`` is what the document promises for this call (when documented)."""
        template = self.template(path.split("?", 1)[0])
        if template is None or method.lower() not in self.document["paths"][template]:
            return  # unknown routes and wrong methods are tested on their own
        pointer = self.response_pointer(method, template, status)
        if pointer is None:
            assert body is None, f"{method} {path} -> {status} should have no body"
            return
        self.validator(pointer).validate(body)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{DOC_URI}#/{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def schema(self, name: str) -> Draft202012Validator:
        return self.validator(_pointer("components", "schemas", name))


CONTRACT = Contract(build_document(OPERATIONS))


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class Api:
    """The aiohttp test client with an API key; every answer is checked against the document."""

    def __init__(self, client: Any, key: str | None) -> None:
        self.client = client
        self.key = key
        self.checked = 0

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Reply:
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        resp = await self.client.request(method, path, headers=sent, **kwargs)
        raw = await resp.read()
        if resp.status == 204:
            assert raw == b"", "204 must have no body"
            body = None
        else:
            assert resp.content_type == "application/json", (resp.status, resp.content_type, raw[:200])
            body = await resp.json()
        CONTRACT.check(method, path, resp.status, body)
        self.checked += 1
        return Reply(resp.status, body, resp.headers)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        reply = await self.call(method, path, **kwargs)
        assert reply.status == status, (reply.status, reply.body)
        return reply.body

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.ok("GET", path, **kwargs)

    async def post(self, path: str, body: Any, status: int = 201) -> Any:
        return await self.ok("POST", path, status, json=body)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.ok("PATCH", path, json=body)

    async def put(self, path: str, body: Any) -> Any:
        return await self.ok("PUT", path, json=body)

    async def delete(self, path: str) -> None:
        await self.ok("DELETE", path, 204)

    async def error(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        """Call, expect an error ``status``; return the ``error`` object."""
        reply = await self.call(method, path, **kwargs)
        assert reply.status == status, (reply.status, reply.body)
        assert set(reply.body) == {"error"}, reply.body
        assert {"code", "message"} <= set(reply.body["error"]), reply.body
        return reply.body["error"]

    async def all_pages(self, path: str, limit: int) -> list[list[dict[str, Any]]]:
        """Follow ``next_cursor`` to the end; the pages in order."""
        pages, cursor = [], None
        sep = "&" if "?" in path else "?"
        while True:
            url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            body = await self.get(url)
            pages.append(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 100, "pagination does not end"


async def new_api_key(services: Services, name: str = "tests") -> str:
    async with services.db.write() as session:
        _, secret = await create_api_key(session, name)
    return secret


@pytest.fixture
async def api_key(services: Services) -> str:
    return await new_api_key(services)


@pytest.fixture
async def api(client: Any, api_key: str) -> Api:
    return Api(client, api_key)


@pytest.fixture
async def anonymous(client: Any) -> Api:
    return Api(client, None)


@pytest.fixture
async def widget(services: Services) -> Widget:
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


async def add_widget(services: Services, name: str, **settings: Any) -> Widget:
    async with services.db.write() as session:
        return await create_widget(session, {"name": name, **settings})


async def add_agent(services: Services, email: str, **fields: Any) -> Agent:
    async with services.db.write() as session:
        return await create_agent(session, {"name": email.split("@")[0].title(), "email": email, **fields})


async def add_offline_message(
    services: Services, widget: Widget, n: int = 1, *, created_at: datetime | None = None
) -> OfflineMessage:
    async with services.db.write() as session:
        row = await store_offline_message(
            session,
            widget,
            {"name": f"Visitor {n}", "email": f"visitor{n}@example.com", "message": f"Question number {n}"},
        )
        if created_at is not None:
            await session.execute(
                update(OfflineMessage).where(OfflineMessage.id == row.id).values(created_at=created_at)
            )
            row.created_at = created_at
    return row
