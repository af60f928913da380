"""The offline path end to end: the message and every delivery it owes commit
together, each delivery and its attempts can be seen and retried, widgets that
reach nobody are reported, and the API and the command line say the same."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import core.deliveries
from bot.migrate import upgrade
from core.bindings import bind_channel, mark_broken
from core.db import Database
from core.deliveries import plan_offline_message, widgets_without_destination
from core.models import OfflineMessage, OutboxItem
from core.offline import store_offline_message
from core.pushover import set_user_key
from core.webhooks import create_endpoint
from core.widgets import create_widget, get_widget
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_api_helpers import api, api_key  # noqa: F401
from tests.test_deliveries_helpers import VISITOR, Clock, add_agent, add_widget, dispatcher_for, drain, outbox, submit_offline

DESKBELL = str(Path(sys.executable).parent / "deskbell")
PUSH_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"


async def test_the_offline_message_and_all_its_deliveries_commit_together(client, services):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    agent = await add_agent(services, "ana@shop.example", on_duty=True, stay_available=True)
    async with services.db.write() as session:
        await create_endpoint(session, widget, {"url": "https://hooks.example/in"})
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
        await set_user_key(session, agent, PUSH_KEY)
    message_id = await submit_offline(client, widget)
    rows = await outbox(services.db)
    assert sorted(r.kind for r in rows) == ["email.offline_message", "pushover.send", "slack.offline_post", "webhook.send"]
    assert {(r.ref_type, r.ref_id) for r in rows} == {("offline_message", message_id)}
    async with services.db.read() as session:
        stored = await session.get(OfflineMessage, message_id)
    assert stored is not None and all(r.created_at >= stored.created_at for r in rows)


async def test_if_planning_a_delivery_fails_the_message_is_not_stored_either(client, services, monkeypatch):
    widget = await add_widget(services, notify_emails=["team@shop.example"])

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(core.deliveries, "plan_offline_message_channel_posts", broken)
    resp = await client.post(f"/widget/{widget.key}/offline-messages", json=VISITOR)
    assert resp.status == 500  # the visitor is told it failed, so they can try again
    async with services.db.read() as session:
        assert list((await session.execute(select(OfflineMessage))).scalars()) == []
    assert await outbox(services.db) == []


async def test_each_delivery_is_listed_with_its_attempts_and_dead_ones_can_be_retried(client, api, services):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    receiver = WebhookReceiver(statuses=[410])
    await receiver.start()
    try:
        created = await api.post(f"/api/v1/widgets/{widget.id}/webhooks", {"url": receiver.url})
        receiver.secret = created["secret"]
        message_id = await submit_offline(client, widget)
        await drain(dispatcher_for(services, Clock()))  # no SMTP configured: the email waits
        body = await api.get(f"/api/v1/offlinemessages/{message_id}/deliveries")
        assert body["next_cursor"] is None
        email, hook = body["items"]
        assert (email["kind"], email["status"], email["attempts"], email["attempt_log"]) == ("email.offline_message", "pending", 0, [])
        assert email["destination"] == "email to team@shop.example"
        assert email["ref_type"] == "offline_message" and email["ref_id"] == message_id
        assert (hook["kind"], hook["status"]) == ("webhook.send", "dead")
        assert hook["destination"] == f"webhook offline_message.created to {receiver.url}"
        [attempt] = hook["attempt_log"]
        assert attempt["ok"] is False and attempt["status_code"] == 410 and attempt["number"] == 1

        conflict = await api.error("POST", f"/api/v1/deliveries/{email['id']}/retry", 409)
        assert "only dead deliveries" in conflict["message"]
        await api.patch(f"/api/v1/webhooks/{created['id']}", {"enabled": True})
        retried = await api.ok("POST", f"/api/v1/deliveries/{hook['id']}/retry")
        assert retried["status"] == "pending" and len(retried["attempt_log"]) == 1  # the history is kept
        await drain(dispatcher_for(services, Clock()))
        again = await api.get(f"/api/v1/deliveries/{hook['id']}")
        assert again["status"] == "done" and [a["status_code"] for a in again["attempt_log"]] == [410, 200]
        assert len(receiver.distinct_accepted()) == 1
    finally:
        await receiver.close()
    await api.error("GET", "/api/v1/offlinemessages/999/deliveries", 404)
    await api.error("POST", "/api/v1/deliveries/999/retry", 404)
    await api.error("GET", "/api/v1/deliveries/999", 404)


async def test_readyz_reports_a_widget_whose_offline_messages_reach_nobody(client, services):
    widget = await add_widget(services)
    body = await (await client.get("/readyz")).json()
    assert body["status"] == "ok"  # a warning, not a reason to stop serving
    [warning] = body["warnings"]
    assert warning["code"] == "no_destination" and warning["widget_id"] == widget.id
    async with services.db.write() as session:
        (await get_widget(session, widget.id)).notify_emails = ["team@shop.example"]
    assert (await (await client.get("/readyz")).json())["warnings"] == []


async def test_what_counts_as_a_destination(services):
    async with services.db.write() as session:
        lonely = await create_widget(session, {"name": "Lonely"})
        await create_widget(session, {"name": "Off", "enabled": False})
        await create_widget(session, {"name": "No form", "offline_form": False})
        await create_widget(session, {"name": "Mail", "notify_emails": ["a@shop.example"]})
        hooked = await create_widget(session, {"name": "Hook"})
        await create_endpoint(session, hooked, {"url": "https://h.example/", "events": ["offline_message.created"]})
        leads = await create_widget(session, {"name": "Leads only"})
        await create_endpoint(session, leads, {"url": "https://h.example/", "events": ["lead.created"]})
        bound = await create_widget(session, {"name": "Bound"})
        await bind_channel(session, bound.id, "slack", workspace_id="T", channel_id="C1")
        broken = await create_widget(session, {"name": "Broken"})
        mark_broken(await bind_channel(session, broken.id, "teams", workspace_id="T", channel_id="C2"), "app removed")
    async with services.db.read() as session:
        assert [w.name for w in await widgets_without_destination(session)] == ["Lonely", "Leads only", "Broken"]
    assert lonely.id


# ---------------------------------------------------------------- the command line


async def _deskbell(db_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "PORT", "SMTP_", "PUSHOVER_"))}
    proc = await asyncio.create_subprocess_exec(
        DESKBELL, *args, env={**full_env, "DESKBELL_DATABASE_URL": db_url, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _seed(db_url: str, **widget: Any) -> tuple[int, str]:
    await asyncio.to_thread(upgrade, db_url)
    db = Database(db_url)
    try:
        async with db.write() as session:
            w = await create_widget(session, {"name": "Shop", **widget})
        return w.id, w.key
    finally:
        await db.dispose()


async def test_the_cli_adds_and_tests_webhooks_and_shows_and_retries_deliveries(empty_db_url):
    widget_id, key = await _seed(empty_db_url)
    code, out, _ = await _deskbell(empty_db_url, "widget", "check")
    assert code == 1 and key in out and "no email, webhook or channel" in out

    receiver = WebhookReceiver(statuses=[500])
    await receiver.start()
    try:
        code, out, err = await _deskbell(empty_db_url, "webhook", "add", key, receiver.url, "--events", "offline_message.created", "--json")
        assert code == 0, err
        endpoint = json.loads(out)
        receiver.secret = endpoint["secret"]
        assert endpoint["events"] == ["offline_message.created"]
        code, out, _ = await _deskbell(empty_db_url, "webhook", "list")
        assert receiver.url in out and "whsec_" not in out  # the secret is shown once only
        assert (await _deskbell(empty_db_url, "widget", "check"))[0] == 0

        code, out, _ = await _deskbell(empty_db_url, "webhook", "test", str(endpoint["id"]))
        assert code == 1 and "failed: HTTP 500" in out
        code, out, _ = await _deskbell(empty_db_url, "webhook", "test", str(endpoint["id"]))
        assert code == 0 and "delivered: HTTP 200" in out
        assert [h.payload["type"] for h in receiver.hits] == ["webhook.test", "webhook.test"]
        assert len({h.msg_id for h in receiver.hits}) == 2  # two test-sends are two messages

        db = Database(empty_db_url)
        try:
            async with db.write() as session:
                widget = await get_widget(session, widget_id)
                row = await store_offline_message(session, widget, VISITOR)
                await plan_offline_message(session, widget, row)
            async with db.write() as session:  # as if every retry had failed
                item = (await session.execute(select(OutboxItem).where(OutboxItem.ref_type == "offline_message", OutboxItem.ref_id == row.id))).scalar_one()
                item.status, item.attempts, item.last_error = "dead", 8, "HTTP 500"
        finally:
            await db.dispose()
        code, out, _ = await _deskbell(empty_db_url, "deliveries", "list", "--offline-message", str(row.id), "--json")
        [listed] = json.loads(out)["items"]
        assert code == 0 and (listed["id"], listed["status"]) == (item.id, "dead")
        code, out, _ = await _deskbell(empty_db_url, "deliveries", "list", "--offline-message", str(row.id))
        assert "dead" in out and "webhook offline_message.created" in out
        code, out, _ = await _deskbell(empty_db_url, "deliveries", "retry", str(item.id))
        assert code == 0 and "tried again" in out
        code, _, err = await _deskbell(empty_db_url, "deliveries", "retry", str(item.id))
        assert code == 1 and "only dead deliveries" in err and "Traceback" not in err
        code, _, err = await _deskbell(empty_db_url, "deliveries", "list", "--offline-message", "999")
        assert code == 1 and "no offline message with id 999" in err
    finally:
        await receiver.close()


async def test_the_cli_warns_when_emails_have_no_smtp_and_sets_pushover_keys(empty_db_url):
    await _seed(empty_db_url, notify_emails=["team@shop.example"])
    code, out, _ = await _deskbell(empty_db_url, "widget", "check", "--json")
    report = json.loads(out)
    assert code == 0 and report["problems"] == [] and "SMTP_URL is not set" in report["warnings"][0]
    code, out, _ = await _deskbell(empty_db_url, "widget", "check", SMTP_URL="smtp://mail.example:25", DESKBELL_MAIL_FROM="bell@shop.example")
    assert code == 0 and "reach someone" in out
    assert (await _deskbell(empty_db_url, "agent", "create", "Ana", "--email", "ana@shop.example"))[0] == 0
    code, out, _ = await _deskbell(empty_db_url, "agent", "pushover", "ana@shop.example", PUSH_KEY)
    assert code == 0 and "Pushover" in out
    code, _, err = await _deskbell(empty_db_url, "agent", "pushover", "ana@shop.example", "nope")
    assert code == 1 and "30-character" in err
    assert (await _deskbell(empty_db_url, "agent", "pushover", "ana@shop.example", "--clear"))[0] == 0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SMTP_URL": "mail.example.com"}, "SMTP_URL"),
        ({"SMTP_URL": "smtp://mail.example.com:99999"}, "SMTP_URL"),
        ({"SMTP_URL": "smtp://mail.example.com?tls=1"}, "SMTP_URL"),
        ({"SMTP_URL": "smtp://mail.example.com"}, "DESKBELL_MAIL_FROM"),
        ({"SMTP_URL": "smtp://a:b@mail.example.com", "DESKBELL_MAIL_FROM": "not an address"}, "DESKBELL_MAIL_FROM"),
        ({"PUSHOVER_TOKEN": "short"}, "PUSHOVER_TOKEN"),
        ({"PUSHOVER_API_URL": "api.pushover.net"}, "PUSHOVER_API_URL"),
    ],
)
def test_delivery_settings_mistakes_name_the_variable(env: dict[str, str], name: str):
    from bot.settings import ConfigError, Settings

    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, dotenv=None)
    assert caught.value.name == name


def test_smtp_urls_in_the_forms_operators_write():
    from adapters.email.config import parse_smtp_url

    c = parse_smtp_url("smtp://user%40shop.example:p%3Ass@mail.example.com?starttls=1")
    assert (c.hostname, c.port, c.username, c.password, c.use_tls, c.start_tls) == (
        "mail.example.com", 587, "user@shop.example", "p:ss", False, True
    )
    c = parse_smtp_url("smtps://u:p@mail.example.com")
    assert (c.port, c.use_tls, c.start_tls) == (465, True, False)
    c = parse_smtp_url("smtp://relay.internal:2525")
    assert (c.port, c.username, c.start_tls) == (2525, None, None)
    assert "p:ss" not in repr(parse_smtp_url("smtp://u:p%3Ass@h"))  # passwords stay out of logs
