"""Signing in and out of the dashboard. The first admin is made on the command line."""

from __future__ import annotations

from aiohttp import web

from adapters.admin import auth, forms
from adapters.admin.render import ENV, error_page, redirect
from adapters.console.auth import same_origin
from adapters.http import client_ip, services
from core.admins import check_credentials, count_admins, open_session, sign_out
from core.errors import Unauthorized

NAV = None
ATTEMPTS_PER_IP = 10  # per 15 minutes
WINDOW_S = 900


def _next(value: object) -> str:
    """Only a path inside the dashboard (never another site) after signing in."""
    if isinstance(value, str) and value.startswith("/admin") and not value.startswith("/admin/login") and "//" not in value and "\\" not in value:
        return value
    return "/admin"


async def _form(request: web.Request, *, status: int = 200, error: str | None = None, email: str = "") -> web.Response:
    async with services(request).db.read() as session:
        first_run = await count_admins(session) == 0
    response = web.Response(status=status, content_type="text/html", charset="utf-8")
    token = auth.login_csrf(request, response)
    response.text = ENV.get_template("signin.html").render(
        title="Sign in", admin=None, nav=[], notice=None, csrf=token, error=error, email=email,
        next=_next(request.query.get("next") if request.method == "GET" else (await request.post()).get("next")),
        first_run=first_run, signed_out=request.query.get("done") == "signed_out",
    )
    return response


async def show(request: web.Request) -> web.Response:
    if await auth.current(request) is not None:
        return redirect(_next(request.query.get("next")))
    return await _form(request)


async def submit(request: web.Request) -> web.Response:
    if not same_origin(request):
        return error_page(request, 403, "Refused", "This form was not sent from the dashboard.")
    form = await request.post()
    email = forms.text(form, "email")
    if not auth.login_csrf_ok(request, form.get("csrf")):
        return await _form(request, status=403, error="The form had expired. Please try again.", email=email)
    svc = services(request)
    wait = await svc.rate_limiter.hit(f"admin-login:{client_ip(request)}", ATTEMPTS_PER_IP, WINDOW_S)
    if wait is not None:
        return await _form(request, status=429, error=f"Too many attempts. Try again in {max(1, round(wait / 60))} minutes.", email=email)
    try:
        async with svc.db.read() as session:
            admin = await check_credentials(session, email, form.get("password", ""))
        async with svc.db.write() as session:
            token = await open_session(session, admin.id)
    except Unauthorized as exc:
        return await _form(request, status=401, error=exc.message.capitalize() + ".", email=email)
    response = redirect(_next(form.get("next")))
    auth.set_session_cookie(request, response, token)
    response.del_cookie(auth.LOGIN_COOKIE, path=auth.COOKIE_PATH)
    return response


@auth.action
async def logout(request: web.Request) -> web.Response:
    async with services(request).db.write() as session:
        await sign_out(session, request[auth.SIGNED].token)
    response = redirect("/admin/login", "signed_out")
    auth.clear_session_cookie(response)
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/admin/login", show)
    router.add_post("/admin/login", submit)
    router.add_post("/admin/logout", logout)
