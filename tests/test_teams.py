"""Microsoft Teams end to end: the real Agents SDK against a fake Bot Connector.

Activities are posted to ``/api/messages`` as Teams sends them (channel posts
with ``;messageid=`` conversation ids, replies, @mentions, card buttons); the
outbox dispatcher delivers to the fake through the ``serviceUrl`` the
binding stored. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from core.dispatch import Dispatcher
from core.models import Agent, AgentIdentity, ChannelBinding, Conversation, Message, OfflineMessage, OutboxItem, ThreadLink
from core.services import Services
from core.widgets import create_widget
from adapters.teams.adapter import TeamsAdapter
from bot.app import build_app
from bot.settings import Settings
from bot.wiring import build_teams
from tests.conftest import eventually
from tests.fakes.bot_connector import (
    CHANNEL,
    TENANT,
    FakeBotConnector,
    TeamsUser,
    card_invoke,
    channel_message,
    conversation_update,
    installation_update,
    personal_message,
)
from tests.widget_client import Visitor

ANA = TeamsUser("Ana Lima", "6f1d2c3b-1111-4a5b-9c8d-0123456789ab", "ana@acme.example")
BEN = TeamsUser("Ben Okafor", "7a2e3d4c-2222-4b6c-8d9e-123456789abc", "ben@acme.example")


@pytest.fixture
async def fake(aiohttp_server) -> FakeBotConnector:  # type: ignore[no-untyped-def]
    connector = FakeBotConnector()
    server = await aiohttp_server(connector.app)
    connector.service_url = str(server.make_url("/amer/"))  # type: ignore[attr-defined]
    for user in (ANA, BEN):
        connector.members[user.id] = user.member()
    return connector


@pytest.fixture
def teams(services: Services) -> TeamsAdapter:
    """Wired as ``deskbell web`` wires it, without a bot registration (TEAMS_LOCAL_DEV)."""
    adapter = build_teams(services, Settings(teams_local_dev=True))
    assert adapter is not None
    return adapter


@pytest.fixture
async def client(aiohttp_client, services: Services, teams: TeamsAdapter):  # type: ignore[no-untyped-def]
    """The whole application with the Teams adapter mounted, as ``deskbell web`` builds it."""
    return await aiohttp_client(build_app(services, teams=teams))


@pytest.fixture
async def delivering(services: Services, teams: TeamsAdapter):  # type: ignore[no-untyped-def]
    """The worker's outbox dispatcher with the Teams handlers, running in the background."""
    dispatcher = Dispatcher(services.db, services.bus, poll_s=0.05)
    teams.register_outbox(dispatcher)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    yield dispatcher
    stop.set()
    await task


@pytest.fixture
async def widget(services: Services):  # type: ignore[no-untyped-def]
    async with services.db.write() as session:
        return await create_widget(session, {"name": "Shop"})


async def post(client, activity: dict[str, Any]):  # type: ignore[no-untyped-def]
    resp = await client.post("/api/messages", json=activity)
    assert resp.status in (200, 201, 202), await resp.text()
    return resp


async def bound_channel(client, fake: FakeBotConnector) -> None:  # type: ignore[no-untyped-def]
    await post(client, channel_message(fake.service_url, ANA, "setup", mention_bot=True))  # type: ignore[attr-defined]


async def count(services: Services, model: Any, *where: Any) -> int:
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def relayed_chain(services: Services) -> str:
    """The reply chain of the first chat, once the relay has recorded it (replies are matched by it)."""

    async def link() -> str | None:
        async with services.db.read() as session:
            return (await session.execute(select(ThreadLink.thread_ref).order_by(ThreadLink.id).limit(1))).scalar()

    return await eventually(link)


def card_of(activity: dict[str, Any]) -> dict[str, Any]:
    return activity["attachments"][0]["content"]


def card_text(card: dict[str, Any]) -> str:
    parts = []
    for element in card["body"]:
        parts.append(element.get("text", ""))
        parts.extend(run.get("text", "") for run in element.get("inlines", []))
    return " ".join(parts)


async def test_setup_in_a_channel_binds_it_and_stores_where_to_post(client, fake, widget, services):
    await bound_channel(client, fake)
    async with services.db.read() as session:
        binding = (await session.execute(select(ChannelBinding))).scalar_one()
    assert (binding.platform, binding.workspace_id, binding.channel_id) == ("teams", TENANT, CHANNEL)
    assert binding.channel_name == "Support" and binding.widget_id == widget.id
    assert binding.config["service_url"] == fake.service_url
    assert binding.config["team_id"].startswith("19:team") and binding.config["tenant_id"] == TENANT
    [reply] = fake.of_kind("reply")
    assert "now receives the chats of <b>Shop</b>" in reply.body["text"]


async def test_visitor_message_opens_a_reply_chain_and_an_agent_reply_reaches_the_visitor(
    client, fake, widget, services, delivering
):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(
        client, widget.key, page_url="https://shop.example/pricing", page_title="Pricing", timezone="Europe/Lisbon"
    )
    ack = await visitor.say("Do you ship to Lisbon?", "c1")
    await eventually(lambda: fake.of_kind("create"))
    [create] = fake.of_kind("create")
    assert create.body["channelData"]["channel"]["id"] == CHANNEL and create.body["isGroup"] is True
    card = card_of(create.body["activity"])
    text = card_text(card)
    assert "New chat on Shop" in text and "Do you ship to Lisbon?" in text
    assert "Pricing (https://shop.example/pricing)" in text and "Europe/Lisbon" in text
    assert [a["title"] for a in card["actions"]] == ["Claim", "Close"]
    chain = await relayed_chain(services)
    assert chain == fake.roots()[0] and chain.startswith(f"{CHANNEL};messageid=")

    await visitor.say("It's for a bike", "c2")
    await eventually(lambda: len(fake.chain(chain)) == 2)
    assert fake.chain(chain)[1]["text"] == "<b>Visitor</b>: It's for a bike"
    assert fake.chain(chain)[1]["textFormat"] == "xml"
    assert fake.of_kind("send")[0].activity_id is None  # a post into the chain, not a reply to a made-up id

    await post(client, channel_message(fake.service_url, ANA, "Yes, in <b>2</b> days.", thread=chain))
    reply = await visitor.next("message")
    while reply["from"] != "agent":
        reply = await visitor.next("message")
    assert reply["text"] == "Yes, in 2 days." and reply["author"] == "Ana Lima"
    assert reply["conversation_id"] == ack["conversation_id"]
    async with services.db.read() as session:
        agent = (await session.execute(select(Agent))).scalar_one()
        identity = (await session.execute(select(AgentIdentity))).scalar_one()
    assert agent.email == "ana@acme.example" and agent.last_seen_at is not None
    assert (identity.platform, identity.user_id) == ("teams", ANA.aad_object_id)
    # the agent's own line is not echoed back into the channel it was written in
    await asyncio.sleep(0.2)
    assert len(fake.chain(chain)) == 2


async def test_a_redelivered_reply_reaches_the_visitor_once(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello?", "c1")
    chain = await relayed_chain(services)
    activity = channel_message(fake.service_url, ANA, "Hi! How can I help?", thread=chain)
    await post(client, activity)
    await post(client, activity)  # Teams retries when our answer was slow
    frames = [f for f in await visitor.quiet(0.5) if f["type"] == "message" and f["from"] == "agent"]
    assert [f["text"] for f in frames] == ["Hi! How can I help?"]
    assert await count(services, Message, Message.sender == "agent") == 1


async def test_notes_and_close_follow_the_core_rules(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hello?", "c1")
    chain = await relayed_chain(services)
    await post(client, channel_message(fake.service_url, ANA, "note: VIP customer", thread=chain))
    await post(client, channel_message(fake.service_url, ANA, "!close", thread=chain))
    closed = await visitor.next("conversation")
    assert closed["state"] == "closed"
    assert [f["text"] for f in visitor.frames if f["type"] == "message"] == ["hello?"]
    await eventually(lambda: any(u for a in fake.activities.values() for u in a.updates))
    root = fake.chain(chain)[0]
    assert "Closed" in card_text(card_of(root)) and "actions" not in card_of(root)


async def test_claim_and_close_buttons_update_the_root_card(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hello?", "c1")
    chain = await relayed_chain(services)
    conversation_id = ack["conversation_id"]
    await post(client, channel_message(fake.service_url, BEN, "", thread=chain, value={"deskbell": "claim", "conversation_id": conversation_id}))
    async def claimed_card() -> bool:
        root = fake.chain(chain)[0]
        return "Claimed by Ben Okafor" in card_text(card_of(root))
    await eventually(claimed_card)
    assert [a["title"] for a in card_of(fake.chain(chain)[0])["actions"]] == ["Close"]
    async with services.db.read() as session:
        conv = await session.get(Conversation, conversation_id)
        ben = (await session.execute(select(Agent).where(Agent.email == BEN.email))).scalar_one()
    assert conv.claimed_by == ben.id

    # Ana's later click on Claim is refused with a reply in the chain; Close (an invoke) closes.
    await post(client, channel_message(fake.service_url, ANA, "", thread=chain, value={"deskbell": "claim", "conversation_id": conversation_id}))
    assert "already claimed" in fake.of_kind("reply")[-1].body["text"]
    resp = await post(client, card_invoke(fake.service_url, ANA, chain, "close", conversation_id))
    assert (await resp.json())["statusCode"] == 200
    assert (await visitor.next("conversation"))["state"] == "closed"
    await eventually(lambda: "Closed" in card_text(card_of(fake.chain(chain)[0])))


async def test_a_429_is_retried_after_retry_after_and_delivered_once(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    fake.fail_next(429, kinds=("create",), retry_after="1")
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello?", "c1")
    await eventually(lambda: fake.roots(), timeout=5)
    first, second = fake.of_kind("create")
    assert second.at - first.at >= 0.9  # Retry-After: 1 was honoured
    assert len(fake.roots()) == 1

    async def row() -> OutboxItem | None:
        async with services.db.read() as session:
            item = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "teams.relay"))).scalar_one()
        return item if item.status == "done" else None

    assert (await eventually(row)).attempts == 2
    await asyncio.sleep(0.2)
    assert len(fake.of_kind("create")) == 2


@pytest.mark.parametrize("status", [412, 502, 504])
async def test_transient_connector_errors_are_retried_with_backoff(client, fake, widget, services, teams, status):
    await bound_channel(client, fake)
    fake.fail_next(status, kinds=("create",))
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello?", "c1")
    dispatcher = Dispatcher(services.db, services.bus)
    teams.register_outbox(dispatcher)
    assert await dispatcher.run_once() == 1
    async with services.db.read() as session:
        row = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "teams.relay"))).scalar_one()
    assert row.status == "pending" and row.last_error and str(status) in row.last_error
    delay = (row.next_attempt_at - row.created_at).total_seconds()
    assert 0.5 <= delay <= 10  # backoff, not the hours-long webhook schedule
    assert fake.roots() == []


@pytest.mark.parametrize(("status", "what"), [(404, "no longer exists"), (403, "removed")])
async def test_a_gone_channel_marks_the_binding_broken_and_readyz_says_so(client, fake, widget, services, delivering, status, what):
    await bound_channel(client, fake)
    (fake.gone_channels if status == 404 else fake.removed_from).add(CHANNEL)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello?", "c1")

    async def broken() -> ChannelBinding | None:
        async with services.db.read() as session:
            b = (await session.execute(select(ChannelBinding))).scalar_one()
        return b if b.status == "broken" else None

    binding = await eventually(broken)
    assert what in binding.status_detail
    async def dead() -> bool:
        async with services.db.read() as session:
            row = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "teams.relay"))).scalar_one()
        return row.status == "dead"  # no retry can fix it: not retried every few minutes for days

    await eventually(dead)
    ready = await client.get("/readyz")
    body = await ready.json()
    # Reported, but the service stays in rotation: widgets and other channels still work.
    assert ready.status == 200 and body["status"] == "degraded" and body["checks"]["teams"]["status"] == "error"
    assert "Support" in body["checks"]["teams"]["error"] and what in body["checks"]["teams"]["error"]
    assert (await visitor.say("still there?", "c2"))["type"] == "ack"  # the widget keeps working

    # Setting the channel up again clears the mark.
    (fake.gone_channels if status == 404 else fake.removed_from).discard(CHANNEL)
    await bound_channel(client, fake)
    assert (await (await client.get("/readyz")).json())["status"] == "ok"


async def test_commands_in_personal_chat_set_duty_and_count_as_being_seen(client, fake, services):
    await post(client, personal_message(fake.service_url, ANA, "online"))
    async with services.db.read() as session:
        agent = (await session.execute(select(Agent))).scalar_one()
    assert agent.on_duty is True and agent.last_seen_at is not None
    [reply] = fake.of_kind("reply")
    assert "On duty" in card_text(card_of(reply.body))

    await post(client, personal_message(fake.service_url, ANA, "stay on"))
    await post(client, personal_message(fake.service_url, ANA, "status"))
    await post(client, personal_message(fake.service_url, ANA, "offline"))
    async with services.db.read() as session:
        agent = (await session.execute(select(Agent))).scalar_one()
    assert (agent.on_duty, agent.stay_available) == (False, True)
    assert "Off duty" in card_text(card_of(fake.of_kind("reply")[-1].body))
    await post(client, personal_message(fake.service_url, ANA, "dance"))
    assert "I don't know" in fake.of_kind("reply")[-1].body["text"]


async def test_commands_in_a_channel_need_the_mention_and_ignore_it_in_the_text(client, fake, widget, services):
    await post(client, channel_message(fake.service_url, ANA, "online"))  # a post to the team, not to the bot
    assert await count(services, Agent) == 0 and fake.calls == []
    await post(client, channel_message(fake.service_url, ANA, "online", mention_bot=True))
    async with services.db.read() as session:
        assert (await session.execute(select(Agent.on_duty))).scalar_one() is True
    activity = channel_message(fake.service_url, ANA, "stay on", mention_bot=True)
    await post(client, activity)
    await post(client, activity)  # redelivered: answered once
    assert len(fake.of_kind("reply")) == 2


async def test_setup_with_several_widgets_needs_the_key(client, fake, widget, services):
    async with services.db.write() as session:
        other = await create_widget(session, {"name": "Docs"})
    await post(client, channel_message(fake.service_url, ANA, "setup", mention_bot=True))
    assert "several widgets" in fake.of_kind("reply")[-1].body["text"] and other.key in fake.of_kind("reply")[-1].body["text"]
    await post(client, channel_message(fake.service_url, ANA, f"setup {other.key}", mention_bot=True))
    async with services.db.read() as session:
        binding = (await session.execute(select(ChannelBinding))).scalar_one()
    assert binding.widget_id == other.id


async def test_installing_says_hello_and_removing_marks_the_team_broken(client, fake, widget, services):
    await post(client, installation_update(fake.service_url, "add"))
    assert "@deskbell setup" in fake.calls[-1].body["text"]
    await bound_channel(client, fake)
    await post(client, installation_update(fake.service_url, "remove"))
    async with services.db.read() as session:
        binding = (await session.execute(select(ChannelBinding))).scalar_one()
    assert binding.status == "broken" and "removed" in binding.status_detail


async def test_a_deleted_channel_marks_its_binding_broken(client, fake, widget, services):
    await bound_channel(client, fake)
    await post(client, conversation_update(fake.service_url, "channelDeleted"))
    async with services.db.read() as session:
        binding = (await session.execute(select(ChannelBinding))).scalar_one()
    assert binding.status == "broken" and "deleted" in binding.status_detail


async def test_non_activities_are_refused_with_400(client):
    resp = await client.post("/api/messages", json={"hello": "world"})
    assert resp.status == 400


async def test_offline_messages_are_posted_with_a_mark_handled_button(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    resp = await client.post(
        f"/widget/{widget.key}/offline-messages",
        json={"name": "Jo", "email": "jo@example.com", "message": "Please call me back", "page_url": "https://shop.example/"},
    )
    assert resp.status == 201
    offline_id = (await resp.json())["id"]
    await eventually(lambda: fake.roots())
    chain = fake.roots()[0]
    card = card_of(fake.chain(chain)[0])
    assert "Please call me back" in card_text(card) and card["actions"][0]["title"] == "Mark handled"
    click = channel_message(fake.service_url, ANA, "", thread=chain, value=card["actions"][0]["data"])
    await post(client, click)
    async with services.db.read() as session:
        assert (await session.get(OfflineMessage, offline_id)).status == "handled"
    card = card_of(fake.chain(chain)[0])
    assert "actions" not in card and "Handled" in card_text(card)


async def test_an_agent_editing_or_deleting_a_reply_in_teams_changes_it_for_the_visitor(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello?", "c1")
    chain = await relayed_chain(services)
    reply = channel_message(fake.service_url, ANA, "We open at 9", thread=chain)
    await post(client, reply)
    sent = await visitor.next("message")
    while sent["from"] != "agent":
        sent = await visitor.next("message")
    edited = {**reply, "type": "messageUpdate", "text": "<p>We open at 10</p>", "channelData": {**reply["channelData"], "eventType": "editMessage"}}
    await post(client, edited)
    update = await visitor.next("message_update")
    assert (update["id"], update["text"]) == (sent["id"], "We open at 10")
    deleted = {**reply, "type": "messageDelete", "text": "", "channelData": {**reply["channelData"], "eventType": "softDeleteMessage"}}
    await post(client, deleted)
    assert (await visitor.next("message_delete"))["id"] == sent["id"]


async def test_a_reply_to_a_closed_chat_is_refused_in_the_thread(client, fake, widget, services, delivering):
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say("hello?", "c1")
    chain = await relayed_chain(services)
    await services.chat.close(ack["conversation_id"])
    await post(client, channel_message(fake.service_url, ANA, "Are you still there?", thread=chain))
    assert "This chat is closed" in fake.of_kind("reply")[-1].body["text"]
    assert await count(services, Message, Message.sender == "agent") == 0


async def test_messages_from_bots_and_unlinked_posts_are_ignored(client, fake, widget, services):
    await post(client, channel_message(fake.service_url, ANA, "lunch anyone?"))
    bot_post = channel_message(fake.service_url, ANA, "online", mention_bot=True)
    bot_post["from"] = {"id": "28:another-bot", "name": "Other bot", "role": "bot"}
    await post(client, bot_post)
    assert fake.calls == [] and await count(services, Agent) == 0


async def test_a_channel_can_be_bound_from_the_command_line_and_relays_like_setup(empty_db_url, tmp_path):
    import asyncio
    import json

    from tests.test_cli import deskbell

    assert (await asyncio.to_thread(deskbell, empty_db_url, "migrate")).returncode == 0
    widget = json.loads((await asyncio.to_thread(deskbell, empty_db_url, "widget", "create", "Shop", "--json")).stdout)
    bad = await asyncio.to_thread(
        deskbell, empty_db_url, "widget", "bind-teams", widget["key"], "19:abc@thread.tacv2",
        "--service-url", "http://insecure.example/", "--tenant", "t1",
    )
    assert bad.returncode == 1 and "--service-url" in bad.stderr
    good = await asyncio.to_thread(
        deskbell, empty_db_url, "widget", "bind-teams", widget["key"], "19:abc@thread.tacv2",
        "--service-url", "https://smba.trafficmanager.net/emea/", "--tenant", "t1", "--json",
    )
    assert good.returncode == 0, good.stderr
    binding = json.loads(good.stdout)
    assert (binding["platform"], binding["channel_id"], binding["workspace_id"]) == ("teams", "19:abc@thread.tacv2", "t1")


async def test_digests_and_away_alerts_are_posted_as_new_posts_in_the_channel(client, fake, widget, services, delivering):
    from datetime import timedelta

    from core.away_alerts import plan_away_alert
    from core.clock import utcnow
    from core.digest_runs import send_digest
    from core.models import Widget
    from core.notify_settings import values_of
    from core.offline import store_offline_message

    await bound_channel(client, fake)
    async with services.db.write() as session:
        row = await session.get(Widget, widget.id)
        await store_offline_message(session, row, {"name": "Jo", "email": "jo@example.com", "message": "Call me back"})
        assert await send_digest(session, row, values_of(None), utcnow() + timedelta(seconds=1)) is not None
        await plan_away_alert(session, row, utcnow())

    def texts() -> list[str]:
        return [str(fake.chain(chain)[0].get("text", "")) for chain in fake.roots()]

    await eventually(lambda: any("jo@example.com" in t for t in texts()) and any("All agents went offline" in t for t in texts()), timeout=8)
