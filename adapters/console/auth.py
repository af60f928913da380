"""Console sign-in: the session cookie, who is asking, and CSRF guards.

An agent signs in with a link (a ``login`` token, reusable for 7 days) and
gets a ``session`` token in an HttpOnly, SameSite=Strict cookie scoped to
``/console``. Only token hashes are stored (``core.agents``). Requests that
change state must be JSON and, when the browser says where they come from,
come from this site: a cross-site form can do neither.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from adapters.http import error_response, services
from core.agents import SESSION_TTL, agent_for_token
from core.errors import NotFound, Unauthorized
from core.models import Agent

COOKIE = "deskbell_console"
COOKIE_PATH = "/console"
SIGN_IN_HINT = "sign in with your console link; ask for a new one with `deskbell agent link EMAIL`"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AgentHandler = Callable[[web.Request, Agent], Awaitable[web.StreamResponse]]


def session_token(request: web.Request) -> str | None:
    token = request.cookies.get(COOKIE)
    return token if token and len(token) <= 200 else None


async def current_agent(request: web.Request) -> Agent:
    """The signed-in agent; ``Unauthorized`` without a live session."""
    token = session_token(request)
    if token is None:
        raise Unauthorized(f"not signed in: {SIGN_IN_HINT}")
    try:
        async with services(request).db.read() as session:
            return await agent_for_token(session, token, "session")
    except (Unauthorized, NotFound) as exc:  # expired, revoked, or the agent was deleted
        raise Unauthorized(f"your console session has ended: {SIGN_IN_HINT}") from exc


def is_https(request: web.Request) -> bool:
    """HTTPS as the browser sees it (a TLS-terminating proxy says so in X-Forwarded-Proto)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=is_https(request),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def _own_hosts(request: web.Request) -> set[str]:
    hosts = {request.host.lower()}
    public = services(request).public_url
    if public:
        hosts.add(urlsplit(public).netloc.lower())
    return hosts


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site.

    No Origin header (curl, scripts) passes: such a client holds the cookie
    itself and cannot be a forged cross-site request.
    """
    if request.headers.get("Sec-Fetch-Site", "").lower() in {"cross-site", "same-site"}:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() in _own_hosts(request)


def signed_in(handler: AgentHandler) -> Handler:
    """Read-only API endpoints: the agent or a 401 JSON answer."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        return await handler(request, await current_agent(request))

    return wrapper


def forgery_refusal(request: web.Request) -> web.Response | None:
    """The answer to a state-changing request a cross-site page could have forged, else None.

    A form on another site can neither set ``Content-Type: application/json``
    without a CORS preflight (which the console never grants) nor hide its Origin.
    """
    if not same_origin(request):
        return error_response(403, "cross_site_request", "this request did not come from the console page")
    if request.content_type != "application/json":
        return error_response(415, "unsupported_media_type", "send the body as application/json")
    return None


def state_changing(handler: AgentHandler) -> Handler:
    """API endpoints that change something: same site, JSON, and signed in."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        refusal = forgery_refusal(request)
        if refusal is not None:
            return refusal
        return await handler(request, await current_agent(request))

    return wrapper
