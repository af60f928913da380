"""Logging: plain lines for a terminal, JSON lines (with request ids) for log pipelines."""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from aiohttp import web

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Query parameters that carry credentials; never written to a log line.
_SECRET_PARAMS = ("token", "key", "code", "secret", "password")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job per minute is noise


def redact_path(request: web.BaseRequest) -> str:
    """The path with credential-bearing query values masked (console links carry tokens)."""
    if not request.query_string:
        return request.path
    parts = []
    for name, value in request.query.items():
        parts.append(f"{name}={'***' if name.lower() in _SECRET_PARAMS else value}")
    return request.path + "?" + "&".join(parts)


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
