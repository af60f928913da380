"""An offline message reaches everyone at once, through the same outbox: the
team's email (real SMTP), a signed webhook, and the bound Slack channel (the
fake Slack API, delivered by the Slack adapter)."""

from __future__ import annotations

from adapters.email.config import parse_smtp_url
from adapters.email.handlers import EmailDeliveries
from adapters.email.smtp import SmtpTransport
from core.webhooks import create_endpoint
from tests.fakes.slack_harness import slack_rig
from tests.fakes.smtp import FakeSmtp
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_deliveries_helpers import add_widget, drain, outbox, submit_offline


async def test_an_offline_message_reaches_email_webhook_and_the_slack_channel(services, aiohttp_client, aiohttp_server):
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        with FakeSmtp() as smtp:
            async with slack_rig(services, aiohttp_client, aiohttp_server, run_dispatcher=False) as rig:
                widget = await add_widget(services, notify_emails=["team@shop.example"])
                await rig.bind(widget.id, "C0SUPPORT")
                async with services.db.write() as session:
                    receiver.secret = (await create_endpoint(session, widget, {"url": receiver.url})).secret
                EmailDeliveries(
                    services.db, SmtpTransport(parse_smtp_url(smtp.url)), mail_from="bell@shop.example", base_url="https://chat.shop.example"
                ).register(rig.dispatcher)

                message_id = await submit_offline(rig.client, widget, message="Where is my parcel?")
                await drain(rig.dispatcher)

                assert {r.kind: r.status for r in await outbox(services.db)} == {
                    "email.offline_message": "done",
                    "webhook.send": "done",
                    "slack.offline_post": "done",
                }
                [post] = rig.fake.posts("C0SUPPORT")
                assert "Where is my parcel?" in str(post)
                [mail] = smtp.to("team@shop.example")
                assert mail["Reply-To"] == "Rita Jones <rita@example.com>"
                [hit] = receiver.hits
                assert hit.payload["data"]["offline_message"]["id"] == message_id
    finally:
        await receiver.close()
