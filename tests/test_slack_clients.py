"""Slack Web API clients: outbox clients are reused per token, against the fake Slack."""

from __future__ import annotations

from adapters.slack.clients import SlackClients
from adapters.slack.config import SlackConfig
from tests.fakes.slack_api import FakeSlack


async def test_outbox_clients_are_reused_per_token_and_dropped_with_their_session(aiohttp_server):
    fake = FakeSlack(tokens={"xoxb-one", "xoxb-two"})
    fake.add_channel("C1", "support", member=True)
    server = await aiohttp_server(fake.app())
    clients = SlackClients(SlackConfig(bot_token="xoxb-one", api_url=str(server.make_url("/api/"))), None)
    try:
        first = clients.client("xoxb-one", outbox=True)
        assert clients.client("xoxb-one", outbox=True) is first
        assert clients.client("xoxb-two", outbox=True) is not first  # a rotated token gets its own
        assert clients.client("xoxb-one") is not first  # interactive clients retry: never the outbox's
        await first.chat_postMessage(channel="C1", text="one")
        await clients.client("xoxb-two", outbox=True).chat_postMessage(channel="C1", text="two")
        await clients.close()
        again = clients.client("xoxb-one", outbox=True)
        assert again is not first and again.session is clients.session()
        await again.chat_postMessage(channel="C1", text="three")
        posts = [(c.token, c.args.get("text")) for c in fake.calls if c.method == "chat.postMessage"]
        assert posts == [("xoxb-one", "one"), ("xoxb-two", "two"), ("xoxb-one", "three")]
    finally:
        await clients.close()
