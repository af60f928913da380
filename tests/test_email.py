"""Email through a real SMTP server (aiosmtpd): the team's notification, replies
to visitors who left, transcripts; retries and refusals as SMTP answers them."""

from __future__ import annotations

import pytest

from core.models import Conversation
from core.notify_settings import update_settings
from core.widgets import get_widget
from tests.fakes.smtp import FakeSmtp
from tests.test_deliveries_helpers import (
    Clock,
    add_agent,
    add_widget,
    attempts,
    dispatcher_for,
    drain,
    outbox,
    submit_offline,
)
from core.conversations import VisitorContext

FROM = "Shop support <bell@shop.example>"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def smtp():
    with FakeSmtp() as server:
        yield server


def _env(smtp: FakeSmtp) -> dict[str, str]:
    return {"SMTP_URL": smtp.url, "DESKBELL_MAIL_FROM": FROM}


def _parts(message) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in message.walk() if not p.is_multipart()}


async def test_the_team_gets_each_offline_message_as_text_and_html_with_reply_to_the_visitor(client, services, smtp):
    widget = await add_widget(services, notify_emails=["team@shop.example", "boss@shop.example"])
    message_id = await submit_offline(client, widget, message="Please call me back\n<b>about</b> order 42")
    rows = await outbox(services.db, "email.")
    assert [(r.kind, r.payload["to"], r.ref_type, r.ref_id) for r in rows] == [
        ("email.offline_message", "team@shop.example", "offline_message", message_id),
        ("email.offline_message", "boss@shop.example", "offline_message", message_id),
    ]

    await drain(dispatcher_for(services, Clock(), **_env(smtp)))

    [mail] = smtp.to("team@shop.example")
    assert len(smtp.to("boss@shop.example")) == 1
    assert mail["From"] == FROM
    assert mail["To"] == "team@shop.example"
    assert mail["Reply-To"] == "Rita Jones <rita@example.com>"
    assert mail["Subject"] == "[Shop] Offline message from Rita Jones"
    assert mail["Message-ID"] == f"<deskbell.{rows[0].id}@shop.example>"
    assert mail.get_content_type() == "multipart/alternative"
    parts = _parts(mail)
    assert set(parts) == {"text/plain", "text/html"}
    assert "Please call me back\n<b>about</b> order 42" in parts["text/plain"]
    assert "https://shop.example/cart" in parts["text/plain"]
    assert "&lt;b&gt;about&lt;/b&gt;" in parts["text/html"] and "<b>about</b>" not in parts["text/html"]
    assert f"/console#offline/{message_id}" in parts["text/html"]
    [attempt] = await attempts(services.db, rows[0].id)
    assert attempt.ok and attempt.status_code == 250


async def test_a_temporary_smtp_refusal_is_retried_and_logged(client, services, smtp):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    await submit_offline(client, widget)
    smtp.behaviour.fail_data = 1
    clock = Clock()
    dispatcher = dispatcher_for(services, clock, **_env(smtp))
    await drain(dispatcher)
    [row] = await outbox(services.db, "email.")
    assert row.status == "pending" and "451" in (row.last_error or "")
    assert smtp.received == []
    clock.advance(seconds=6)
    await drain(dispatcher)
    [row] = await outbox(services.db, "email.")
    assert row.status == "done"
    assert [(a.ok, a.status_code) for a in await attempts(services.db, row.id)] == [(False, 451), (True, 250)]
    assert len(smtp.to("team@shop.example")) == 1


async def test_a_refused_recipient_fails_at_once_without_blocking_the_others(client, services, smtp):
    widget = await add_widget(services, notify_emails=["gone@shop.example", "team@shop.example"])
    await submit_offline(client, widget)
    smtp.behaviour.refuse = {"gone@shop.example"}
    await drain(dispatcher_for(services, Clock(), **_env(smtp)))
    gone, team = await outbox(services.db, "email.")
    assert gone.status == "dead" and "550" in (gone.last_error or "")
    assert (await attempts(services.db, gone.id))[0].status_code == 550
    assert team.status == "done" and len(smtp.to("team@shop.example")) == 1


async def test_an_unreachable_mail_server_is_retried_later(client, services):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    await submit_offline(client, widget)
    await drain(dispatcher_for(services, Clock(), SMTP_URL="smtp://127.0.0.1:9?starttls=0", DESKBELL_MAIL_FROM=FROM))
    [row] = await outbox(services.db, "email.")
    assert row.status == "pending" and "cannot reach smtp://127.0.0.1:9" in (row.last_error or "")


async def test_smtp_credentials_from_the_url_are_used_to_log_in(client, services):
    with FakeSmtp(username="bell@shop.example", password="p@ss:word") as smtp:
        widget = await add_widget(services, notify_emails=["team@shop.example"])
        await submit_offline(client, widget)
        url = f"smtp://bell%40shop.example:p%40ss%3Aword@127.0.0.1:{smtp.port}?starttls=0"
        await drain(dispatcher_for(services, Clock(), SMTP_URL=url))  # DESKBELL_MAIL_FROM defaults to the login
        [mail] = smtp.to("team@shop.example")
        assert mail["From"] == "bell@shop.example"


async def test_without_smtp_configured_emails_wait_instead_of_vanishing(client, services):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    await submit_offline(client, widget)
    await drain(dispatcher_for(services, Clock()))
    [row] = await outbox(services.db, "email.")
    assert (row.status, row.attempts) == ("pending", 0)


# ---------------------------------------------------------------- visitors who left


async def _chat(services, widget, email="rita@example.com"):  # type: ignore[no-untyped-def]
    conv, _, _ = await services.chat.visitor_message(
        widget, "visitor-1", "Is the blue one in stock?", client_id="c1",
        context=VisitorContext(name="Rita", email=email, page_url="https://shop.example/p/blue"),
    )
    return conv


async def test_an_agent_reply_reaches_a_visitor_who_left_by_email(services, smtp):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    agent = await add_agent(services, "ana@shop.example", on_duty=True)
    conv = await _chat(services, widget)
    await services.chat.agent_message(conv.id, "note: check the warehouse", agent_id=agent.id)
    await services.chat.agent_message(conv.id, "Yes, we have 3 left.", agent_id=agent.id)
    await services.chat.agent_message(conv.id, "Shall I reserve one?", agent_id=agent.id)
    clock = Clock()
    dispatcher = dispatcher_for(services, clock, **_env(smtp))
    await drain(dispatcher)
    assert smtp.received == []  # the visitor may still be reading: wait first
    clock.advance(minutes=3)
    await drain(dispatcher)
    [mail] = smtp.to("rita@example.com")
    assert mail["Subject"] == "Shop: a reply to your message"
    assert mail["Reply-To"] == "team@shop.example"
    text = _parts(mail)["text/plain"]
    assert "Yes, we have 3 left." in text and "Shall I reserve one?" in text
    assert "warehouse" not in text  # notes never reach visitors
    assert "https://shop.example/p/blue" in text
    first, second = await outbox(services.db, "email.visitor_reply")
    assert "later reply" in ((await attempts(services.db, first.id))[0].detail or "")


async def test_no_email_when_the_visitor_answered_in_the_chat(services, smtp):
    widget = await add_widget(services)
    conv = await _chat(services, widget)
    await services.chat.agent_message(conv.id, "Yes, we have 3 left.", author="Ana")
    await services.chat.visitor_message(widget, "visitor-1", "Great, thanks!", client_id="c2")
    clock = Clock()
    clock.advance(minutes=3)
    await drain(dispatcher_for(services, clock, **_env(smtp)))
    assert smtp.received == []
    [row] = await outbox(services.db, "email.visitor_reply")
    assert row.status == "done" and "visitor answered" in ((await attempts(services.db, row.id))[0].detail or "")


async def test_no_reply_email_is_planned_for_a_visitor_without_an_address(services):
    widget = await add_widget(services)
    conv = await _chat(services, widget, email=None)
    await services.chat.agent_message(conv.id, "Hello!", author="Ana")
    assert await outbox(services.db, "email.") == []


async def test_a_closed_chat_sends_its_transcript_when_the_widget_asks_for_it(services, smtp):
    widget = await add_widget(services, notify_emails=["team@shop.example"])
    async with services.db.write() as session:
        await update_settings(session, await get_widget(session, widget.id), {"transcript_email": True})
    conv = await _chat(services, widget)
    await services.chat.agent_message(conv.id, "Yes, we have 3 left.", author="Ana")
    await services.chat.agent_message(conv.id, "!close", author="Ana")
    clock = Clock()
    clock.advance(minutes=3)
    await drain(dispatcher_for(services, clock, **_env(smtp)))
    [mail] = smtp.to("rita@example.com")  # the transcript carries the reply: one email, not two
    assert mail["Subject"] == "Your chat with Shop"
    text = _parts(mail)["text/plain"]
    assert text.index("Is the blue one in stock?") < text.index("Yes, we have 3 left.")
    assert "Ana" in text


async def test_no_transcript_by_default(services, smtp):
    widget = await add_widget(services)
    conv = await _chat(services, widget)
    await services.chat.close(conv.id)
    assert await outbox(services.db, "email.transcript") == []
    async with services.db.read() as session:
        assert (await session.get(Conversation, conv.id)).status == "closed"  # type: ignore[union-attr]
