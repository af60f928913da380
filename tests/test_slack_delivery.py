"""Deliveries that go wrong, presence that runs out, and the other ways in: OAuth and Socket Mode."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.clock import utcnow
from core.models import Agent, ChannelBinding, OutboxItem, WorkspaceInstallation
from core.services import Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.fakes.slack_api import APP_TOKEN, command_form, event_body, thread_reply
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.widget_client import Visitor

CHANNEL = "C0SUPPORT"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    async with slack_rig(services, aiohttp_client, aiohttp_server) as rig:
        rig.fake.add_user("UANA", "Ana Lima", email="ana@example.com")
        yield rig


async def _widget(rig: SlackRig, **settings):  # type: ignore[no-untyped-def]
    async with rig.services.db.write() as session:
        return await create_widget(session, {"name": "Shop", **settings})


async def _binding(rig: SlackRig) -> ChannelBinding:
    async with rig.services.db.read() as session:
        return (await session.execute(select(ChannelBinding))).scalar_one()


async def test_a_channel_the_bot_left_marks_the_binding_broken_in_readyz_until_it_is_back(rig: SlackRig):
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    rig.fake.channels[CHANNEL]["is_member"] = False  # someone removed the bot
    visitor = await Visitor.connect(rig.client, widget.key)
    await visitor.say("hello?", "c1")

    async def broken() -> ChannelBinding | None:
        binding = await _binding(rig)
        return binding if binding.status == "broken" else None

    binding = await eventually(broken)
    assert binding.status_detail is not None and binding.status_detail.startswith("not_in_channel: ")
    assert "/invite" in binding.status_detail
    async def dead() -> OutboxItem | None:
        async with rig.services.db.read() as session:
            [item] = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "slack.relay"))).scalars()
        return item if item.status == "dead" else None

    assert (await eventually(dead)).attempts == 1  # no retry can fix it
    ready = await rig.client.get("/readyz")
    body = await ready.json()
    # Reported, but the service stays in rotation: widgets and other channels still work.
    assert ready.status == 200 and body["status"] == "degraded" and body["checks"]["slack"]["status"] == "error"
    assert "#support" in body["checks"]["slack"]["error"] and "not_in_channel" in body["checks"]["slack"]["error"]

    rig.fake.channels[CHANNEL]["is_member"] = True  # invited back
    await visitor.say("still there?", "c2")
    await eventually(lambda: rig.fake.posts(CHANNEL))
    assert (await eventually(lambda: _ok(rig))) is True
    assert (await (await rig.client.get("/readyz")).json())["status"] == "ok"


async def _ok(rig: SlackRig) -> bool:
    return (await _binding(rig)).status == "ok"


async def test_presence_keeps_an_active_agent_seen_and_the_widget_goes_offline_when_slack_is_closed(rig: SlackRig):
    widget = await _widget(rig, session_timeout_s=60)
    await rig.bind(widget.id, CHANNEL)
    hook = rig.fake.response_url("online")
    await rig.sender.command(command_form("/chat-online", "", user="UANA", channel=CHANNEL, response_url=hook))
    await eventually(lambda: rig.fake.responses)
    poller = rig.adapter.presence
    poller.clock = clock = Clock()  # type: ignore[assignment]

    async def last_seen_almost_expired() -> None:
        async with rig.services.db.write() as session:
            agent = (await session.execute(select(Agent))).scalar_one()
            agent.last_seen_at = utcnow() - timedelta(seconds=59.5)
        rig.services.watcher.poke()
        await rig.services.watcher.refresh()

    await last_seen_almost_expired()
    visitor = await Visitor.connect(rig.client, widget.key)
    assert visitor.welcome["status"]["online"] is True
    rig.fake.presence["UANA"] = "active"
    assert await poller.run_once() == 1  # Slack says active: seen again
    assert [f for f in await visitor.quiet(1.0) if f["type"] == "status"] == []  # stays online past the old expiry

    clock.now += 5
    assert await poller.run_once() == 0 and len(rig.fake.calls_of("users.getPresence")) == 1  # cached: not due yet

    rig.fake.presence["UANA"] = "away"  # the team closed Slack
    await last_seen_almost_expired()
    clock.now += 60
    assert await poller.run_once() == 0
    status = await visitor.next("status", timeout=3)
    assert status["online"] is False and status["reason"] == "no_agent_available"


async def test_presence_polling_backs_off_when_slack_says_429(rig: SlackRig):
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    await rig.sender.command(command_form("/chat-online", "", user="UANA", channel=CHANNEL, response_url=rig.fake.response_url()))
    await eventually(lambda: rig.fake.responses)
    poller = rig.adapter.presence
    poller.clock = clock = Clock()  # type: ignore[assignment]
    rig.fake.rate_limit("users.getPresence", retry_after=30)
    assert await poller.run_once() == 0
    clock.now += 10
    await poller.run_once()
    assert len(rig.fake.calls_of("users.getPresence")) == 1  # paused for Retry-After
    clock.now += 25
    assert await poller.run_once() == 1
    assert len(rig.fake.calls_of("users.getPresence")) == 2


async def test_multi_workspace_install_stores_the_token_used_for_that_workspace(services: Services, aiohttp_client, aiohttp_server):
    oauth = {"slack_bot_token": None, "slack_client_id": "111.222", "slack_client_secret": "client-secret"}
    async with slack_rig(services, aiohttp_client, aiohttp_server, **oauth) as rig:
        page = await rig.client.get("/slack/install", allow_redirects=False)
        html = await page.text()
        assert page.status == 200 and "oauth/v2/authorize" in html
        state = re.search(r"state=([\w\-]+)", html).group(1)  # type: ignore[union-attr]
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        rig.fake.grant_code("code-1", team_id="T0OTHER", bot_token="xoxb-other-team")
        done = await rig.client.get(f"/slack/oauth_redirect?code=code-1&state={state}", headers={"Cookie": cookie})
        assert done.status == 200, await done.text()
        async with services.db.read() as session:
            row = (await session.execute(select(WorkspaceInstallation))).scalar_one()
        assert (row.platform, row.workspace_id, row.bot_token) == ("slack", "T0OTHER", "xoxb-other-team")
        replay = await rig.client.get(f"/slack/oauth_redirect?code=code-1&state={state}", headers={"Cookie": cookie})
        assert replay.status != 200  # a state works once

        async with services.db.write() as session:
            widget = await create_widget(session, {"name": "Other"})
            from core.bindings import bind_channel

            await bind_channel(session, widget.id, "slack", workspace_id="T0OTHER", channel_id="C0OTHER", channel_name="help")
        rig.fake.add_channel("C0OTHER", "help", member=True)
        rig.fake.add_user("UOLA", "Ola Nord")
        visitor = await Visitor.connect(rig.client, widget.key)
        await visitor.say("hi other team", "c1")
        [root] = await eventually(lambda: rig.fake.posts("C0OTHER"))
        assert rig.fake.calls_of("chat.postMessage")[-1].token == "xoxb-other-team"
        await eventually(lambda: _linked(services))
        await rig.sender.event(event_body(thread_reply("C0OTHER", root["ts"], "UOLA", "hello from the other team"), team_id="T0OTHER"))
        while (frame := await visitor.next("message"))["from"] != "agent":
            pass
        assert frame["author"] == "Ola Nord"

        await rig.sender.event(event_body({"type": "app_uninstalled", "event_ts": "1.1"}, team_id="T0OTHER"))

        async def gone() -> bool:
            async with services.db.read() as session:
                return (await session.execute(select(WorkspaceInstallation))).first() is None

        await eventually(gone)
        binding = await _binding(rig)
        assert binding.status == "broken" and binding.status_detail.startswith("app_uninstalled")  # type: ignore[union-attr]


async def _linked(services: Services) -> bool:
    from core.models import ThreadLink

    async with services.db.read() as session:
        return (await session.execute(select(ThreadLink))).first() is not None


async def test_socket_mode_receives_events_without_a_public_url(services: Services, aiohttp_client, aiohttp_server):
    socket = {"slack_app_token": APP_TOKEN, "slack_signing_secret": None}
    async with slack_rig(services, aiohttp_client, aiohttp_server, **socket) as rig:
        rig.fake.add_user("UANA", "Ana Lima")
        async with services.db.write() as session:
            widget = await create_widget(session, {"name": "Shop"})
        await rig.bind(widget.id, CHANNEL)
        assert (await rig.client.post("/slack/events", data=b"{}")).status == 404  # nothing to verify HTTP with
        visitor = await Visitor.connect(rig.client, widget.key)
        await visitor.say("hello", "c1")
        [root] = await eventually(lambda: rig.fake.posts(CHANNEL))
        await eventually(lambda: _linked(services))
        await rig.fake.push_envelope("events_api", event_body(thread_reply(CHANNEL, root["ts"], "UANA", "via socket")), "env-1")
        while (frame := await visitor.next("message"))["from"] != "agent":
            pass
        assert frame["text"] == "via socket"
        assert {"envelope_id": "env-1"} in rig.fake.socket_frames  # acknowledged


async def test_manager_digests_and_away_alerts_are_posted_into_the_bound_channel(rig: SlackRig):
    from core.away_alerts import plan_away_alert
    from core.digest_runs import send_digest
    from core.models import Widget
    from core.notify_settings import values_of
    from core.offline import store_offline_message

    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    async with rig.services.db.write() as session:
        row = await session.get(Widget, widget.id)
        await store_offline_message(session, row, {"name": "Rita", "email": "rita@example.com", "message": "Call me back"})
        values = values_of(None)  # the defaults: digest to the channel
        digest = await send_digest(session, row, values, utcnow() + timedelta(seconds=1))
        assert digest is not None and digest.message_count == 1
        await plan_away_alert(session, row, utcnow())
    rig.dispatcher.wake()

    def texts() -> list[str]:
        return [p.get("text", "") for p in rig.fake.posts(CHANNEL)]

    await eventually(lambda: any("rita@example.com" in t for t in texts()) and any("All agents went offline" in t for t in texts()), timeout=8)


async def test_digests_can_go_to_a_managers_channel_instead_of_the_chats_channel(rig: SlackRig):
    from core.digest_runs import send_digest
    from core.models import Widget
    from core.notify_settings import update_settings, values_of
    from core.offline import store_offline_message

    rig.fake.add_channel("C0MANAGERS", "managers", member=True)
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    async with rig.services.db.write() as session:
        row = await session.get(Widget, widget.id)
        values = await update_settings(session, row, {"digest_channel_id": "C0MANAGERS"})
        await store_offline_message(session, row, {"name": "Rita", "email": "rita@example.com", "message": "Call me back"})
        assert await send_digest(session, row, values, utcnow() + timedelta(seconds=1)) is not None
    rig.dispatcher.wake()
    await eventually(lambda: any("rita@example.com" in p.get("text", "") for p in rig.fake.posts("C0MANAGERS")), timeout=8)
    assert not any("rita@example.com" in p.get("text", "") for p in rig.fake.posts(CHANNEL) if "Digest" in p.get("text", ""))
