"""Signed webhooks, checked by a receiver that verifies with the `standardwebhooks`
package from PyPI (not our code): endpoints, events, retries with a stable
``webhook-id``, 410 Gone, timeouts and test-sends."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from adapters.webhooks.sender import WebhookDeliveries
from adapters.webhooks.signing import headers, sign
from core.conversations import VisitorContext
from core.deliveries import plan_lead_created
from core.dispatch import Dispatcher
from core.models import WebhookEndpoint
from core.webhooks import EVENT_TYPES, event_body
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_api_helpers import api, api_key  # noqa: F401
from tests.test_deliveries_helpers import Clock, add_widget, attempts, dispatcher_for, drain, outbox, submit_offline


@pytest.fixture
async def receiver():
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.close()


async def _endpoint(api, widget, receiver, events=None):  # type: ignore[no-untyped-def]
    body = {"url": receiver.url} if events is None else {"url": receiver.url, "events": events}
    created = await api.post(f"/api/v1/widgets/{widget.id}/webhooks", body)
    receiver.secret = created["secret"]
    return created


# ---------------------------------------------------------------- signing, without I/O


def test_our_signature_is_the_one_the_reference_library_computes():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    at = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    body = '{"type":"offline_message.created","data":{"x":"\u00e9"}}'
    assert sign(secret, "msg_1", int(at.timestamp()), body) == Webhook(secret).sign("msg_1", at, body)


def test_the_body_is_type_timestamp_and_data_in_compact_json():
    body = event_body("lead.created", {"name": "Zoë"}, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert body == '{"type":"lead.created","timestamp":"2026-01-02T03:04:05+00:00","data":{"name":"Zoë"}}'


def test_headers_carry_id_timestamp_and_signature():
    secret = "whsec_" + base64.b64encode(b"s" * 24).decode()
    h = headers(secret, "msg_abc", 1764072000, "{}")
    assert h["webhook-id"] == "msg_abc" and h["webhook-timestamp"] == "1764072000"
    assert h["webhook-signature"].startswith("v1,")


# ---------------------------------------------------------------- endpoints API


async def test_an_endpoint_answers_its_secret_once(api, services):
    widget = await add_widget(services)
    created = await api.post(f"/api/v1/widgets/{widget.id}/webhooks", {"url": "https://hooks.example/in"})
    assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) == 32
    assert created["events"] == list(EVENT_TYPES) and created["enabled"] is True
    listed = await api.get(f"/api/v1/widgets/{widget.id}/webhooks")
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]
    assert "secret" not in await api.get(f"/api/v1/webhooks/{created['id']}")
    changed = await api.patch(f"/api/v1/webhooks/{created['id']}", {"events": ["lead.created"]})
    assert changed["events"] == ["lead.created"]
    await api.delete(f"/api/v1/webhooks/{created['id']}")
    assert (await api.get(f"/api/v1/widgets/{widget.id}/webhooks"))["items"] == []


async def test_bad_endpoints_are_refused_with_every_field_named(api, services):
    widget = await add_widget(services)
    error = await api.error("POST", f"/api/v1/widgets/{widget.id}/webhooks", 422, json={"url": "ftp://x", "events": ["order.paid"]})
    assert set(error["fields"]) == {"url", "events"}
    error = await api.error("POST", f"/api/v1/widgets/{widget.id}/webhooks", 422, json={"url": "https://x.example", "events": []})
    assert "at least one" in error["fields"]["events"]
    await api.error("POST", "/api/v1/widgets/999/webhooks", 404, json={"url": "https://x.example"})
    await api.error("GET", "/api/v1/webhooks/999", 404)


# ---------------------------------------------------------------- delivery


async def test_an_offline_message_is_delivered_signed_to_each_subscribed_endpoint(client, api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver, ["offline_message.created"])
    other = await api.post(f"/api/v1/widgets/{widget.id}/webhooks", {"url": "https://elsewhere.example/", "events": ["lead.created"]})
    message_id = await submit_offline(client, widget)
    [row] = await outbox(services.db, "webhook.")  # the lead.created-only endpoint gets nothing
    assert row.payload["endpoint_id"] != other["id"]
    await drain(dispatcher_for(services, Clock()))
    [hit] = receiver.hits
    assert receiver.rejected == []
    assert hit.payload["type"] == "offline_message.created"
    assert hit.payload["data"]["offline_message"]["id"] == message_id
    assert hit.payload["data"]["offline_message"]["email"] == "rita@example.com"
    assert hit.payload["data"]["widget"] == {"id": widget.id, "key": widget.key, "name": "Shop"}
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "done" and hit.msg_id == row.payload["msg_id"]


async def test_failed_attempts_are_retried_with_the_same_webhook_id(client, api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver)
    receiver.statuses = [500, 503]
    await submit_offline(client, widget)
    clock = Clock()
    dispatcher = dispatcher_for(services, clock)
    await drain(dispatcher)
    clock.advance(seconds=6)
    await drain(dispatcher)
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "pending" and row.last_error and "HTTP 503" in row.last_error
    clock.advance(minutes=6)
    await drain(dispatcher)
    assert [h.status for h in receiver.hits] == [500, 503, 200]
    assert len({h.msg_id for h in receiver.hits}) == 1  # one message, three attempts
    assert len({json.dumps(h.payload, sort_keys=True) for h in receiver.hits}) == 1
    assert receiver.rejected == []  # every attempt freshly signed and verified
    log = await attempts(services.db, row.id)
    assert [(a.ok, a.status_code) for a in log] == [(False, 500), (False, 503), (True, 200)]


async def test_410_gone_disables_the_endpoint_and_fails_at_once(client, api, services, receiver):
    widget = await add_widget(services)
    created = await _endpoint(api, widget, receiver)
    receiver.statuses = [410]
    await submit_offline(client, widget)
    await drain(dispatcher_for(services, Clock()))
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "dead" and "410" in (row.last_error or "")
    endpoint = await api.get(f"/api/v1/webhooks/{created['id']}")
    assert endpoint["enabled"] is False and "410" in endpoint["disabled_reason"]
    await submit_offline(client, widget)
    assert len(await outbox(services.db, "webhook.")) == 1  # nothing planned for a disabled endpoint
    reenabled = await api.patch(f"/api/v1/webhooks/{created['id']}", {"enabled": True})
    assert reenabled["enabled"] is True and reenabled["disabled_reason"] is None


async def test_429_with_retry_after_waits_as_told(client, api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver)
    receiver.statuses = [429]
    receiver.headers_out = {"Retry-After": "120"}
    await submit_offline(client, widget)
    clock = Clock()
    await drain(dispatcher_for(services, clock))
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "pending"
    assert 119 <= (row.next_attempt_at - clock.now).total_seconds() <= 121


async def test_a_receiver_that_does_not_answer_in_time_is_retried(client, api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver)
    receiver.hold_s = 1.0
    await submit_offline(client, widget)
    dispatcher = Dispatcher(services.db, clock=Clock())
    WebhookDeliveries(services.db, timeout_s=0.2).register(dispatcher)
    await drain(dispatcher)
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "pending" and "no answer within" in (row.last_error or "")


async def test_a_deleted_endpoint_ends_its_waiting_deliveries(client, api, services, receiver):
    widget = await add_widget(services)
    created = await _endpoint(api, widget, receiver)
    await submit_offline(client, widget)
    await api.delete(f"/api/v1/webhooks/{created['id']}")
    await drain(dispatcher_for(services, Clock()))
    [row] = await outbox(services.db, "webhook.")
    assert row.status == "dead" and "deleted" in (row.last_error or "")


async def test_conversations_started_and_closed_are_announced(api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver, ["conversation.started", "conversation.closed"])
    conv, _, _ = await services.chat.visitor_message(
        widget, "v1", "Hi there", client_id="c1", context=VisitorContext(name="Rita", email="rita@example.com")
    )
    await services.chat.visitor_message(widget, "v1", "Anyone?", client_id="c2")
    await services.chat.close(conv.id)
    await services.chat.close(conv.id)  # closing twice announces once
    await drain(dispatcher_for(services, Clock()))
    assert [h.payload["type"] for h in receiver.hits] == ["conversation.started", "conversation.closed"]
    started, closed = (h.payload["data"] for h in receiver.hits)
    assert started["message"]["text"] == "Hi there" and started["conversation"]["visitor_email"] == "rita@example.com"
    assert closed["conversation"]["status"] == "closed"


async def test_leads_can_be_announced_by_other_code(api, services, receiver):
    widget = await add_widget(services)
    await _endpoint(api, widget, receiver, ["lead.created"])
    async with services.db.write() as session:
        assert await plan_lead_created(session, widget.id, {"name": "Rita", "email": "rita@example.com"}) == 1
    await drain(dispatcher_for(services, Clock()))
    [hit] = receiver.hits
    assert hit.payload["type"] == "lead.created" and hit.payload["data"]["lead"]["email"] == "rita@example.com"


async def test_a_test_send_goes_once_even_to_a_disabled_endpoint(api, services, receiver):
    widget = await add_widget(services)
    created = await _endpoint(api, widget, receiver)
    await api.patch(f"/api/v1/webhooks/{created['id']}", {"enabled": False})
    queued = await api.ok("POST", f"/api/v1/webhooks/{created['id']}/test", 202)
    assert queued["status"] == "pending" and queued["kind"] == "webhook.send"
    await drain(dispatcher_for(services, Clock()))
    [hit] = receiver.hits
    assert hit.payload["type"] == "webhook.test"
    delivery = await api.get(f"/api/v1/deliveries/{queued['id']}")
    assert delivery["status"] == "done" and delivery["attempt_log"][0]["status_code"] == 200


async def test_a_failed_test_send_is_not_retried(api, services, receiver):
    widget = await add_widget(services)
    created = await _endpoint(api, widget, receiver)
    receiver.statuses = [500]
    queued = await api.ok("POST", f"/api/v1/webhooks/{created['id']}/test", 202)
    await drain(dispatcher_for(services, Clock()))
    delivery = await api.get(f"/api/v1/deliveries/{queued['id']}")
    assert delivery["status"] == "dead" and delivery["attempt_log"][0]["status_code"] == 500


async def test_endpoints_vanish_with_their_widget(api, services):
    widget = await add_widget(services)
    await api.post(f"/api/v1/widgets/{widget.id}/webhooks", {"url": "https://hooks.example/in"})
    await api.delete(f"/api/v1/widgets/{widget.id}")
    async with services.db.read() as session:
        assert (await session.get(WebhookEndpoint, 1)) is None
