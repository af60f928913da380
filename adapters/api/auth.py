"""Bearer API keys for everything under ``/api/v1`` and ``/offlinemessages``.

A middleware rather than a per-handler decorator, so unknown paths and wrong
methods under those prefixes also answer 401 to a caller without a key and
nobody can map the API without one. Keys are checked against the database on
every request (a revoked key stops working at once); ``last_used_at`` is
written at most once a minute per key, so reads never queue behind writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from sqlalchemy import or_, update

from adapters.http import error_response, services
from core.apikeys import authenticate
from core.clock import utcnow
from core.errors import Unauthorized
from core.models import ApiKey
from core.services import Services

PROTECTED = ("/api/v1", "/offlinemessages")
TOUCH_EVERY = timedelta(minutes=1)
MAX_KEY_LENGTH = 200
API_KEY = web.RequestKey("api_key", ApiKey)


def protected(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PROTECTED)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>` (create one with `deskbell apikey create`)")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("the Authorization header must be `Bearer <key>`")
    if len(secret) > MAX_KEY_LENGTH:
        raise Unauthorized("invalid API key")
    return secret


async def _touch(svc: Services, key: ApiKey) -> None:
    """Record use; the WHERE clause keeps it once a minute across processes too."""
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    async with svc.db.write() as session:
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
        )


async def authenticated(request: web.Request) -> ApiKey:
    svc = services(request)
    secret = _bearer(request)
    async with svc.db.read() as session:
        key = await authenticate(session, secret)
    await _touch(svc, key)
    return key


def _challenge(exc: Unauthorized, request: web.Request) -> web.Response:
    challenge = 'Bearer realm="deskbell"'
    if request.headers.get("Authorization"):
        challenge += ', error="invalid_token"'
    return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": challenge})


@web.middleware
async def api_key_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not protected(request.path):
        return await handler(request)
    try:
        request[API_KEY] = await authenticated(request)
    except Unauthorized as exc:
        return _challenge(exc, request)
    return await handler(request)
