"""Shared aiohttp plumbing: the services key, JSON bodies and JSON errors.

Every public endpoint answers errors as ``{"error": {"code", "message"}}``
with the right status; bodies are read with a size cap before parsing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core.errors import Conflict, DomainError, NotFound, RateLimited, Unauthorized, ValidationFailed
from core.services import Services

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)

STATUS_FOR: dict[type[DomainError], int] = {
    NotFound: 404,
    ValidationFailed: 422,
    Conflict: 409,
    RateLimited: 429,
    Unauthorized: 401,
}


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def error_response(
    status: int, code: str, message: str, *, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return web.json_response({"error": body}, status=status, headers=headers)


class BodyError(DomainError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_json(request: web.Request, max_bytes: int | None = None) -> Any:
    """The request's JSON body, refused with 413/400/415 before it can cost much."""
    limit = max_bytes or services(request).limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "too_large", f"request body is larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(413, "too_large", f"request body is larger than {limit} bytes")
    if not raw.strip():
        raise BodyError(400, "bad_json", "request body is empty; send a JSON object")
    if request.content_type not in {"application/json", ""} and not request.content_type.endswith("+json"):
        raise BodyError(415, "unsupported_media_type", "send the body as application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(400, "bad_json", f"request body is not valid JSON: {exc}") from exc


def json_error_middleware(prefixes: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Turn domain errors everywhere, and HTTP errors under ``prefixes``, into JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except BodyError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except RateLimited as exc:
            return error_response(
                429, exc.code, exc.message, headers={"Retry-After": str(max(1, round(exc.retry_after)))}
            )
        except DomainError as exc:
            status = next((s for t, s in STATUS_FOR.items() if isinstance(exc, t)), 400)
            return error_response(status, exc.code, exc.message, fields=exc.fields or None)
        except web.HTTPException as exc:
            if exc.status < 400 or not request.path.startswith(prefixes):
                raise
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
            message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path}"
            return error_response(exc.status, code, message, headers=_allow(exc))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            if not request.path.startswith(prefixes):
                raise
            return error_response(500, "internal_error", "something went wrong on our side; it has been logged")

    return middleware


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow") if exc.headers else None
    return {"Allow": allow} if allow else None


def client_ip(request: web.Request) -> str:
    """The peer address (X-Forwarded-For is trusted only behind a configured proxy)."""
    return request.remote or "unknown"
