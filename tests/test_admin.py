"""The admin dashboard at /admin: sign-in, CSRF, and every page doing its job, on both databases."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.admins import create_admin
from core.agents import create_agent
from core.bindings import bind_channel, mark_broken
from core.clock import utcnow
from core.models import AdminSession, Agent, OfflineMessage, OutboxItem, WebhookEndpoint, Widget
from core.services import Services
from core.widgets import DEFAULTS, create_widget
from tests.conftest import eventually
from tests.widget_client import Visitor

EMAIL, PASSWORD = "boss@example.com", "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def make_admin(services: Services, email: str = EMAIL, password: str = PASSWORD) -> None:
    async with services.db.write() as session:
        await create_admin(session, email, password)


async def sign_in(client: Any, email: str = EMAIL, password: str = PASSWORD, **extra: str) -> Any:
    page = await client.get("/admin/login")
    token = CSRF.search(await page.text()).group(1)  # type: ignore[union-attr]
    return await client.post(
        "/admin/login", data={"csrf": token, "email": email, "password": password, **extra}, allow_redirects=False
    )


async def csrf_of(client: Any, path: str = "/admin") -> str:
    page = await client.get(path)
    assert page.status == 200, await page.text()
    return CSRF.search(await page.text()).group(1)  # type: ignore[union-attr]


@pytest.fixture
async def admin_client(client: Any, services: Services) -> Any:
    await make_admin(services)
    resp = await sign_in(client)
    assert resp.status == 303, await resp.text()
    return client


async def post(client: Any, path: str, data: dict[str, Any] | list[tuple[str, str]], **kwargs: Any) -> Any:
    token = await csrf_of(client)
    items = list(data.items()) if isinstance(data, dict) else list(data)
    return await client.post(path, data=[("csrf", token), *items], allow_redirects=False, **kwargs)


@pytest.fixture
async def widget(services: Services) -> Widget:
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


# ---------------------------------------------------------------- signing in


async def test_sign_in_with_the_right_password_sets_a_strict_httponly_cookie(client, services):
    await make_admin(services)
    wrong = await sign_in(client, password="not the password")
    assert wrong.status == 401 and "Wrong email or password" in await wrong.text()
    unknown = await sign_in(client, email="nobody@example.com")
    assert unknown.status == 401 and "Wrong email or password" in await unknown.text()
    ok = await sign_in(client, next="/admin/agents")
    assert ok.status == 303 and ok.headers["Location"] == "/admin/agents"
    cookie = next(v for k, v in ok.headers.items() if k == "Set-Cookie" and v.startswith("deskbell_admin="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    async with services.db.read() as session:
        [row] = (await session.execute(select(AdminSession))).scalars()
    assert row.token_hash not in cookie  # only the hash is stored, the cookie holds the token
    assert (await client.get("/admin")).status == 200


async def test_pages_send_signed_out_visitors_to_the_sign_in_form_and_back(client, services):
    resp = await client.get("/admin/widgets?x=1", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login?next=%2Fadmin%2Fwidgets%3Fx%3D1"
    first_run = await (await client.get("/admin/login")).text()
    assert "deskbell admin create" in first_run  # no admin yet: say how to make one


async def test_after_sign_in_next_never_leads_off_the_dashboard(client, services):
    await make_admin(services)
    for target in ("https://evil.example/", "//evil.example/admin", "/console", "/admin\\..\\x"):
        client.session.cookie_jar.clear()
        resp = await sign_in(client, next=target)
        assert resp.headers["Location"] == "/admin", target


async def test_sign_in_needs_the_forms_token_and_refuses_cross_site_posts(client, services):
    await make_admin(services)
    no_token = await client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD}, allow_redirects=False)
    assert no_token.status == 403
    await client.get("/admin/login")
    cross = await client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD}, headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert cross.status == 403


async def test_sign_in_attempts_are_rate_limited(client, services):
    await make_admin(services)
    for _ in range(10):
        assert (await sign_in(client, password="wrong wrong wrong")).status == 401
    assert (await sign_in(client)).status == 429


async def test_signing_out_ends_the_session_in_the_database(admin_client, services):
    token = await csrf_of(admin_client)
    resp = await admin_client.post("/admin/logout", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/admin/login")
    async with services.db.read() as session:
        assert list((await session.execute(select(AdminSession))).scalars()) == []
    assert (await admin_client.get("/admin", allow_redirects=False)).status == 303


async def test_an_expired_session_is_signed_out(admin_client, services):
    async with services.db.write() as session:
        await session.execute(update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await admin_client.get("/admin", allow_redirects=False)).status == 303


async def test_forms_without_this_sessions_csrf_token_change_nothing(admin_client, services, widget):
    resp = await admin_client.post(f"/admin/widgets/{widget.id}", data={"name": "Hacked", "csrf": "x" * 40})
    assert resp.status == 403
    cross = await post(admin_client, f"/admin/widgets/{widget.id}", {"name": "Hacked"}, headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).name == "Shop"


async def test_every_page_renders_with_a_strict_content_security_policy(admin_client, widget):
    for path in (
        "/admin", "/admin/widgets", f"/admin/widgets/{widget.id}", f"/admin/widgets/{widget.id}/schedule",
        "/admin/agents", "/admin/offline", "/admin/knowledge", "/admin/webhooks", "/admin/integrations",
    ):
        resp = await admin_client.get(path)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["Cache-Control"] == "no-store"
    missing = await admin_client.get("/admin/widgets/999999")
    assert missing.status == 404 and "text/html" in missing.headers["Content-Type"]
    assert (await admin_client.get("/admin/static/admin.js")).status == 200


# ---------------------------------------------------------------- widgets


async def test_creating_a_widget_shows_its_embed_snippet(admin_client, services):
    resp = await post(admin_client, "/admin/widgets", {"name": "Docs site"})
    assert resp.status == 303
    page = await (await admin_client.get(resp.headers["Location"])).text()
    async with services.db.read() as session:
        widget = (await session.execute(select(Widget).where(Widget.name == "Docs site"))).scalar_one()
    assert f'data-widget="{widget.key}"' in page.replace("&#34;", '"').replace("&quot;", '"')
    assert "/widget.js" in page


def _settings(**override: Any) -> dict[str, Any]:
    base = {
        "name": "Shop", "enabled": "1", "online_tab_text": "", "offline_tab_text": "", "offline_message": "",
        "primary": "#2563eb", "text": "#ffffff", "position": "right", "offline_form": "1",
        "allowed_origins": "", "notify_emails": "", "session_timeout_min": "15",
    }
    base.update(override)
    return {k: v for k, v in base.items() if v is not None}


async def test_saving_widget_settings_stores_them_and_live_widgets_follow(admin_client, services, widget, client):
    async with services.db.write() as session:
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    services.watcher.poke()
    visitor = await Visitor.connect(client, widget.key)
    await eventually(lambda: services.watcher.cached(widget.id) and services.watcher.cached(widget.id).online)
    resp = await post(admin_client, f"/admin/widgets/{widget.id}", _settings(
        enabled=None,  # unticked: switch the widget off
        online_tab_text="Ask us anything", primary="#ffcc00", text="#ffffff", position="left",
        allowed_origins="https://shop.example\nhttps://www.shop.example/", notify_emails="team@shop.example",
        ai_enabled="1", hide_when_offline="1", session_timeout_min="30", retention_days="90",
    ))
    assert resp.status == 303 and resp.headers["Location"].endswith("done=saved")
    async with services.db.read() as session:
        stored = await session.get(Widget, widget.id)
    assert (stored.enabled, stored.online_tab_text, stored.offline_tab_text) == (False, "Ask us anything", DEFAULTS["offline_tab_text"])
    assert stored.colors == {"primary": "#ffcc00", "text": "#ffffff"} and stored.position == "left"
    assert stored.allowed_origins == ["https://shop.example", "https://www.shop.example"]
    assert (stored.ai_enabled, stored.hide_when_offline, stored.session_timeout_s) == (True, True, 1800)
    assert stored.retention_days == 90
    status = await visitor.next("status")  # WIDGET_CHANGED reached the open widget: it is off now
    while status["online"]:  # the earlier "online" push may still be on its way
        status = await visitor.next("status")
    assert status["online"] is False and status["reason"] == "disabled" and status["mode"] == "hidden"
    page = await (await admin_client.get(f"/admin/widgets/{widget.id}")).text()
    assert "Below the 4.5:1" in page  # yellow with white text: the page says the widget will fix it
    await visitor.close()


async def test_config_says_which_texts_are_custom_so_the_widget_localizes_the_rest(admin_client, client, widget):
    await post(admin_client, f"/admin/widgets/{widget.id}", _settings(offline_message="Back soon, write to us!"))
    config = await (await client.get(f"/widget/{widget.key}/config")).json()
    assert config["custom_texts"] == ["offline_message"]
    assert config["texts"]["offline_message"] == "Back soon, write to us!"
    assert config["texts"]["online_tab_text"] == DEFAULTS["online_tab_text"]


async def test_text_presets_fill_the_form_without_saving(admin_client, services, widget):
    page = await (await admin_client.get(f"/admin/widgets/{widget.id}?preset=sales")).text()
    assert 'value="Talk to sales"' in page
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).online_tab_text == DEFAULTS["online_tab_text"]


async def test_bad_widget_settings_come_back_with_each_field_named(admin_client, services, widget):
    resp = await post(admin_client, f"/admin/widgets/{widget.id}", _settings(
        name="", allowed_origins="not a url", notify_emails="nope", session_timeout_min="0", retention_days="0",
    ))
    assert resp.status == 422
    page = await resp.text()
    for field in ("name", "allowed_origins", "notify_emails", "session_timeout_min", "retention_days"):
        assert f'id="{field}-err"' in page, field
    assert 'value="" maxlength="200"' in page or 'id="name" name="name" value=""' in page  # what was typed stays
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).name == "Shop"


async def test_deleting_a_widget(admin_client, services, widget):
    resp = await post(admin_client, f"/admin/widgets/{widget.id}/delete", {})
    assert resp.status == 303
    async with services.db.read() as session:
        assert await session.get(Widget, widget.id) is None


# ---------------------------------------------------------------- schedule


def _week(**days: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = [("timezone", "Europe/Berlin")]
    for day, ranges in days.items():
        for start, end in ranges:
            out += [(f"{day}_start", start), (f"{day}_end", end)]
    return out


async def test_schedule_editor_saves_ranges_overnight_ranges_and_exceptions(admin_client, services, widget):
    data = _week(mon=[("09:00", "12:00"), ("13:00", "17:00")], fri=[("22:00", "02:00")], sat=[("", "")]) + [
        ("exc_date", "2026-12-25"), ("exc_hours", ""),
        ("exc_date", "2026-12-24"), ("exc_hours", "09:00-12:00"),
        ("exc_date", ""), ("exc_hours", ""),
    ]
    resp = await post(admin_client, f"/admin/widgets/{widget.id}/schedule", data)
    assert resp.status == 303, await resp.text()
    async with services.db.read() as session:
        schedule = (await session.get(Widget, widget.id)).schedule
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["weekly"]["mon"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert schedule["weekly"]["fri"] == [["22:00", "02:00"]] and schedule["weekly"]["sat"] == []
    assert schedule["exceptions"] == [{"date": "2026-12-25", "closed": True}, {"date": "2026-12-24", "hours": [["09:00", "12:00"]]}]
    page = await (await admin_client.get(f"/admin/widgets/{widget.id}/schedule")).text()
    assert 'value="22:00"' in page and 'value="2026-12-25"' in page and "<option selected>Europe/Berlin</option>" in page


async def test_a_schedule_mistake_is_named_by_day_and_nothing_is_stored(admin_client, services, widget):
    resp = await post(admin_client, f"/admin/widgets/{widget.id}/schedule", _week(tue=[("9", "17:00")]))
    assert resp.status == 422
    assert 'Tuesday, range 1: &#34;9&#34; is not a time' in await resp.text()
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).schedule is None


async def test_always_open_removes_the_schedule(admin_client, services, widget):
    await post(admin_client, f"/admin/widgets/{widget.id}/schedule", _week(mon=[("09:00", "17:00")]))
    await post(admin_client, f"/admin/widgets/{widget.id}/schedule", [("always_open", "1"), *_week(mon=[("09:00", "17:00")])])
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).schedule is None


def _cells(html: str) -> list[str]:
    return re.findall(r'data-state="(\w+)"', html)


async def test_the_preview_shows_core_status_for_every_hour_of_the_next_7_days(admin_client, services, widget):
    async with services.db.write() as session:
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    every_day = {d: [("09:00", "17:00")] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    draft = [("timezone", "UTC")] + _week(**every_day)[1:]
    resp = await post(admin_client, f"/admin/widgets/{widget.id}/schedule/preview", draft)
    assert resp.status == 200
    cells = _cells(await resp.text())
    assert len(cells) == 7 * 24
    assert cells.count("online") == 7 * 8 and cells.count("closed") == 7 * 16
    # 09:00 to 16:00 online each day; the draft is not stored.
    assert cells[9:17] == ["online"] * 8 and cells[8] == "closed" and cells[17] == "closed"
    async with services.db.read() as session:
        assert (await session.get(Widget, widget.id)).schedule is None
    # Nobody available: the hours in the schedule say so instead of "online".
    async with services.db.write() as session:
        await session.execute(update(Agent).values(on_duty=False))
    cells = _cells(await (await post(admin_client, f"/admin/widgets/{widget.id}/schedule/preview", draft)).text())
    assert cells.count("no_agent") == 7 * 8 and "online" not in cells
    bad = await post(admin_client, f"/admin/widgets/{widget.id}/schedule/preview", _week(mon=[("25:00", "26:00")]))
    assert bad.status == 422 and "Monday" in await bad.text()


async def test_overnight_ranges_show_in_the_preview_after_midnight(admin_client, widget):
    every_day = {d: [("22:00", "02:00")] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    resp = await post(admin_client, f"/admin/widgets/{widget.id}/schedule/preview", [("timezone", "UTC")] + _week(**every_day)[1:])
    cells = _cells(await resp.text())
    day = cells[24:48]  # the second day, whose 00:00-02:00 belongs to the previous evening's range
    assert day[0:2] == ["no_agent", "no_agent"] and day[2] == "closed" and day[22:24] == ["no_agent", "no_agent"]


async def test_saving_a_schedule_flips_the_live_widget(admin_client, services, widget, client):
    async with services.db.write() as session:
        await create_agent(session, {"name": "Ana", "email": "ana@example.com", "on_duty": True, "stay_available": True})
    services.watcher.poke()
    await eventually(lambda: services.watcher.cached(widget.id) and services.watcher.cached(widget.id).online)
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["online"] is True
    # Open only on a date long gone: closed now, and forever after.
    closed = [("timezone", "UTC"), ("exc_date", "2001-01-01"), ("exc_hours", "09:00-10:00")]
    assert (await post(admin_client, f"/admin/widgets/{widget.id}/schedule", closed)).status == 303
    status = await visitor.next("status")
    assert status["online"] is False and status["reason"] == "outside_schedule"
    await visitor.close()


# ---------------------------------------------------------------- agents


async def test_duty_switch_on_the_agents_page_flips_the_widget(admin_client, services, widget, client):
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com"})
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["online"] is False
    assert (await post(admin_client, f"/admin/agents/{agent.id}/duty", {"on_duty": "1"})).status == 303
    status = await visitor.next("status")
    assert status["online"] is True and status["mode"] == "live"
    await post(admin_client, f"/admin/agents/{agent.id}/duty", {"on_duty": "0"})
    assert (await visitor.next("status"))["online"] is False
    await post(admin_client, f"/admin/agents/{agent.id}/stay", {"stay_available": "1"})
    async with services.db.read() as session:
        assert (await session.get(Agent, agent.id)).stay_available is True
    await visitor.close()


async def test_agents_page_adds_agents_keeps_pushover_keys_and_makes_sign_in_links(admin_client, services):
    assert (await post(admin_client, "/admin/agents", {"name": "Bo", "email": "Bo@Example.com"})).status == 303
    dup = await post(admin_client, "/admin/agents", {"name": "Bo 2", "email": "bo@example.com"})
    assert dup.status == 409 and "already exists" in await dup.text()
    async with services.db.read() as session:
        agent = (await session.execute(select(Agent).where(Agent.email == "bo@example.com"))).scalar_one()
    bad = await post(admin_client, f"/admin/agents/{agent.id}/pushover", {"user_key": "short"})
    assert bad.status == 422 and "30-character" in await bad.text()
    key = "u" * 30
    assert (await post(admin_client, f"/admin/agents/{agent.id}/pushover", {"user_key": key})).status == 303
    assert key in await (await admin_client.get("/admin/agents")).text()
    link = await post(admin_client, f"/admin/agents/{agent.id}/link", {})
    assert "/console/login?token=dl_" in await link.text()


# ---------------------------------------------------------------- offline messages


async def _messages(services: Services, widget: Widget) -> list[OfflineMessage]:
    rows = [
        OfflineMessage(widget_id=widget.id, name="Rita", email="rita@example.com", message="Where is my order?", status="new"),
        OfflineMessage(widget_id=widget.id, name="Sam", email="sam@example.com", message="=HYPERLINK(\"http://x\")", status="new"),
        OfflineMessage(widget_id=widget.id, name="Tom", email="tom@example.com", message="Thanks, all good", status="handled"),
    ]
    async with services.db.write() as session:
        session.add_all(rows)
    return rows


async def test_offline_messages_search_filter_and_mark_handled(admin_client, services, widget):
    rita, sam, tom = await _messages(services, widget)
    page = await (await admin_client.get("/admin/offline?q=ORDER")).text()
    assert "Where is my order?" in page and "sam@example.com" not in page
    page = await (await admin_client.get("/admin/offline?status=handled")).text()
    assert "tom@example.com" in page and "rita@example.com" not in page
    page = await (await admin_client.get("/admin/offline?q=100%25")).text()
    assert "No offline messages match" in page  # % is searched for, not a wildcard
    resp = await post(admin_client, "/admin/offline/mark", [("status", "handled"), ("id", str(rita.id)), ("id", str(sam.id)), ("back", "/admin/offline?status=new")])
    assert resp.status == 303 and resp.headers["Location"].startswith("/admin/offline?status=new")
    async with services.db.read() as session:
        rows = {m.id: m for m in (await session.execute(select(OfflineMessage))).scalars()}
    assert rows[rita.id].status == rows[sam.id].status == "handled" and rows[rita.id].handled_at is not None
    off_site = await post(admin_client, "/admin/offline/mark", [("status", "new"), ("id", str(tom.id)), ("back", "https://evil.example/")])
    assert off_site.headers["Location"].startswith("/admin/offline")


async def test_offline_messages_export_as_csv_that_spreadsheets_do_not_execute(admin_client, services, widget):
    await _messages(services, widget)
    resp = await admin_client.get("/admin/offline.csv?status=new")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["email"] for r in rows] == ["sam@example.com", "rita@example.com"]
    assert rows[0]["message"].startswith("'=")  # a formula is kept as text
    assert rows[1]["widget"] == "Shop"


# ---------------------------------------------------------------- integrations and webhooks


async def test_integrations_show_each_binding_with_its_health(admin_client, services, widget):
    async with services.db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1", channel_name="support")
        teams = await bind_channel(session, widget.id, "teams", workspace_id="tenant", channel_id="19:abc", channel_name="Helpdesk")
        mark_broken(teams, "the bot was removed from the team")
    page = await (await admin_client.get("/admin/integrations")).text()
    assert "support" in page and "Helpdesk" in page and "Working" in page
    assert "the bot was removed from the team" in page and "database: ok" in page


async def test_webhook_endpoints_show_the_secret_once_and_test_sends_are_logged(admin_client, services, widget):
    resp = await post(admin_client, "/admin/webhooks", [("widget", str(widget.id)), ("url", "https://hooks.example/x"), ("events", "offline_message.created")])
    assert resp.status == 200
    page = await resp.text()
    async with services.db.read() as session:
        endpoint = (await session.execute(select(WebhookEndpoint))).scalar_one()
    assert endpoint.secret in page and endpoint.events == ["offline_message.created"]
    assert endpoint.secret not in await (await admin_client.get("/admin/webhooks")).text()
    assert (await post(admin_client, f"/admin/webhooks/{endpoint.id}/test", {})).status == 303
    log = await (await admin_client.get("/admin/webhooks")).text()
    assert "webhook.test" in log and "pending" in log
    async with services.db.write() as session:
        item = (await session.execute(select(OutboxItem))).scalar_one()
        item.status = "dead"
    assert "Retry" in await (await admin_client.get("/admin/webhooks")).text()
    assert (await post(admin_client, f"/admin/webhooks/deliveries/{item.id}/retry", {})).status == 303
    async with services.db.read() as session:
        assert (await session.get(OutboxItem, item.id)).status == "pending"
    bad = await post(admin_client, "/admin/webhooks", [("widget", str(widget.id)), ("url", "ftp://x")])
    assert bad.status == 422
    await post(admin_client, f"/admin/webhooks/{endpoint.id}/toggle", {"enabled": "0"})
    async with services.db.read() as session:
        assert (await session.get(WebhookEndpoint, endpoint.id)).enabled is False


# ---------------------------------------------------------------- knowledge base


async def test_knowledge_base_add_edit_import_and_try_a_question(admin_client, services, widget):
    from aiohttp import FormData

    from core.models import KnowledgeEntry

    resp = await post(admin_client, f"/admin/knowledge/{widget.id}", {
        "title": "How long does shipping take?", "answer": "Orders ship in 2 business days; delivery takes 3-5 days.", "tags": "shipping, orders",
    })
    assert resp.status == 303
    async with services.db.read() as session:
        entry = (await session.execute(select(KnowledgeEntry))).scalar_one()
    assert entry.tags == ["shipping", "orders"]
    missing = await post(admin_client, f"/admin/knowledge/{widget.id}", {"title": "", "answer": ""})
    assert missing.status == 422
    edited = await post(admin_client, f"/admin/knowledge/{widget.id}/{entry.id}", {
        "title": "How long does shipping take?", "answer": "Orders ship within 1 business day; delivery takes 3-5 days.", "tags": "shipping",
    })
    assert edited.status == 303

    form = FormData()
    form.add_field("csrf", await csrf_of(admin_client, f"/admin/knowledge?widget={widget.id}"))
    form.add_field("file", b"title,answer,tags\nCan I return a tent?,Yes: within 30 days if unused.,returns\n",
                   filename="faq.csv", content_type="text/csv")
    imported = await admin_client.post(f"/admin/knowledge/{widget.id}/import", data=form)
    assert imported.status == 200 and "faq.csv: 1 added, 0 updated" in await imported.text()
    bad = FormData()
    bad.add_field("csrf", await csrf_of(admin_client, f"/admin/knowledge?widget={widget.id}"))
    bad.add_field("file", b"\x00\x01", filename="faq.exe")
    assert (await admin_client.post(f"/admin/knowledge/{widget.id}/import", data=bad)).status == 422

    page = await (await admin_client.get(f"/admin/knowledge?widget={widget.id}")).text()
    assert "Can I return a tent?" in page and "How long does shipping take?" in page
    asked = await post(admin_client, f"/admin/knowledge/{widget.id}/ask", {"question": "how long is shipping?"})
    assert asked.status == 200
    answer = await asked.text()
    assert "within 1 business day" in answer  # the edited answer, from retrieval
    assert f'href="/admin/knowledge/{widget.id}/{entry.id}"' in answer  # its source is linked


async def test_assistant_settings_are_saved_and_bad_ones_named(admin_client, services, widget):
    from core.assistant_state import get_config

    ok = await post(admin_client, f"/admin/knowledge/{widget.id}/assistant", {
        "name": "Trail helper", "provider": "retrieval", "model": "", "booking_link": "https://cal.example/acme",
        "escalation_keywords": "Refund, lawyer", "collect_contact": "1", "daily_token_budget": "5000",
    })
    assert ok.status == 303
    async with services.db.read() as session:
        config = await get_config(session, widget.id)
    assert (config.name, config.provider, config.booking_link) == ("Trail helper", "retrieval", "https://cal.example/acme")
    assert config.escalation_keywords == ("refund", "lawyer") and config.escalate_on_low_confidence is False
    assert config.daily_token_budget == 5000
    bad = await post(admin_client, f"/admin/knowledge/{widget.id}/assistant", {"name": "x", "booking_link": "javascript:x", "daily_token_budget": "-1"})
    assert bad.status == 422
    page = await bad.text()
    assert 'id="ai-booking_link-err"' in page and 'id="ai-daily_token_budget-err"' in page
