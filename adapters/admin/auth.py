"""Dashboard sign-in: the session cookie, who is asking, and CSRF checks on every form.

The pattern is the console's (``adapters/console/auth.py``): an HttpOnly,
SameSite=Strict cookie scoped to ``/admin`` holding a token of which only the
hash is stored. Forms are plain HTML posts, so each one also carries a CSRF
token derived from the session token, and the browser's own word on where a
request comes from (``Sec-Fetch-Site``/``Origin``) must say "this site".
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from adapters.console.auth import is_https, same_origin
from adapters.http import services
from core.admins import SESSION_TTL, admin_for_session, csrf_token
from core.errors import NotFound, Unauthorized
from core.models import AdminUser

COOKIE = "deskbell_admin"
LOGIN_COOKIE = "deskbell_admin_login"  # CSRF token of the sign-in form, before any session exists
COOKIE_PATH = "/admin"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Signed:
    """The signed-in admin of this request and the CSRF token their forms carry."""

    admin: AdminUser
    token: str
    csrf: str


SIGNED = web.RequestKey("admin_signed", Signed)


def session_token(request: web.Request) -> str | None:
    token = request.cookies.get(COOKIE)
    return token if token and len(token) <= 200 else None


async def current(request: web.Request) -> Signed | None:
    token = session_token(request)
    if token is None:
        return None
    try:
        async with services(request).db.read() as session:
            admin = await admin_for_session(session, token)
    except (Unauthorized, NotFound):
        return None
    return Signed(admin, token, csrf_token(token))


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), path=COOKIE_PATH,
        httponly=True, samesite="Strict", secure=is_https(request),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def login_csrf(request: web.Request, response: web.StreamResponse) -> str:
    """The sign-in form's token: kept in a cookie and echoed by the form (double submit)."""
    value = request.cookies.get(LOGIN_COOKIE)
    if not value or len(value) != 32:
        value = secrets.token_hex(16)
    response.set_cookie(
        LOGIN_COOKIE, value, max_age=3600, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=is_https(request)
    )
    return value


def login_csrf_ok(request: web.Request, submitted: object) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE)
    return bool(expected) and isinstance(submitted, str) and hmac.compare_digest(expected, submitted)


def _to_login(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/admin"
    return web.Response(status=303, headers={"Location": "/admin/login?next=" + quote(target, safe="")})


def page(handler: Handler) -> Handler:
    """A page for signed-in admins; others are sent to the sign-in form and back."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        signed = await current(request)
        if signed is None:
            if session_token(request) is None and request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
                # Arriving from a link elsewhere: the browser held back the Strict
                # cookie on this navigation. Reload from here, same-site.
                from adapters.admin.render import refresh_page

                return refresh_page()
            return _to_login(request)
        request[SIGNED] = signed
        return await handler(request)

    return wrapper


def action(handler: Handler) -> Handler:
    """A form post: signed in, from this site, with this session's CSRF token."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        from adapters.admin.render import error_page

        if not same_origin(request):
            return error_page(request, 403, "Refused", "This form was not sent from the dashboard.")
        signed = await current(request)
        if signed is None:
            return _to_login(request)
        form = await request.post()
        submitted = form.get("csrf")
        if not isinstance(submitted, str) or not hmac.compare_digest(submitted, signed.csrf):
            return error_page(request, 403, "Refused", "The form had expired or was not sent from the dashboard. Go back, reload and try again.")
        request[SIGNED] = signed
        return await handler(request)

    return wrapper
