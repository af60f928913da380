"""Request ids: every line logged while a request is handled carries one id.

The id is the caller's ``X-Request-Id`` when it is short and printable, else a new one,
and goes back in the response's ``X-Request-Id`` header.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.logs import request_id


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tag everything logged while handling a request with one id, echoed in X-Request-Id."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    token = request_id.set(rid)
    try:
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    finally:
        request_id.reset(token)
