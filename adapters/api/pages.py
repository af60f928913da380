"""List responses: ``{"items": [...], "next_cursor": ...}`` and their keyset queries.

Lists are newest first by id; a page is fetched with one row more than asked
so we know whether another page exists without counting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.api.operation import Schema, ref
from core.pagination import page

T = TypeVar("T")


def list_schema(item: str) -> Schema:
    """The list envelope around ``item`` objects, for the OpenAPI components."""
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` to get the next page; null on the last page.",
            },
        },
    }


def list_response(items: Iterable[dict[str, Any]], next_cursor: str | None) -> web.Response:
    return web.json_response({"items": list(items), "next_cursor": next_cursor})


def paged(
    rows: list[T], limit: int, to_json: Callable[[T], dict[str, Any]], id_of: Callable[[T], int] = lambda r: r.id  # type: ignore[attr-defined]
) -> web.Response:
    """Answer a ``limit + 1`` row fetch as one page plus the cursor of the next."""
    shown, next_cursor = page(rows, limit, id_of)
    return list_response((to_json(r) for r in shown), next_cursor)


async def newest_first(session: AsyncSession, model: Any, before_id: int | None, limit: int) -> list[Any]:
    """``limit + 1`` rows of ``model`` with ids below ``before_id``, newest first."""
    query = select(model).order_by(model.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(model.id < before_id)
    return list((await session.execute(query)).scalars())
