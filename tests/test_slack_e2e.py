"""End to end through a fake Slack: visitor -> thread root -> agent reply in the thread -> visitor."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from core.models import DeliveryAttempt, Message, OutboxItem, ThreadLink
from core.services import Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.fakes.slack_api import event_body, thread_reply
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.widget_client import Visitor

CHANNEL = "C0SUPPORT"


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    async with slack_rig(services, aiohttp_client, aiohttp_server) as rig:
        rig.fake.add_user("UANA", "Ana Lima", email="ana@example.com")
        yield rig


@pytest.fixture
async def widget(rig: SlackRig):  # type: ignore[no-untyped-def]
    async with rig.services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    await rig.bind(widget.id, CHANNEL)
    return widget


async def _root(rig: SlackRig) -> dict:  # type: ignore[type-arg]
    """The thread root, once deskbell has recorded where it landed (replies can map to it)."""
    async def linked() -> bool:
        async with rig.services.db.read() as session:
            return (await session.execute(select(func.count()).select_from(ThreadLink))).scalar_one() > 0

    await eventually(linked)
    return rig.fake.posts(CHANNEL)[0]


def _buttons(message: dict) -> list[str]:  # type: ignore[type-arg]
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def _agent_frame(visitor: Visitor) -> dict:  # type: ignore[type-arg]
    while True:
        frame = await visitor.next("message")
        if frame["from"] == "agent":
            return frame


async def test_visitor_message_opens_a_thread_and_the_agents_reply_reaches_the_visitor(rig: SlackRig, widget):
    visitor = await Visitor.connect(
        rig.client, widget.key, page_url="https://shop.example/pricing", page_title="Pricing",
        language="pt-BR", timezone="Europe/Lisbon",
    )
    await visitor.say("Do you ship to Lisbon?", "c1")
    root = await _root(rig)
    text = str(root["blocks"])
    assert "Do you ship to Lisbon?" in text and "https://shop.example/pricing" in text and "Pricing" in text
    assert "Europe/Lisbon" in text and "pt-BR" in text
    assert _buttons(root) == ["deskbell_claim", "deskbell_close"]
    assert root["thread_ts"] is None

    reply = event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Yes! Delivery takes 2 days."))
    resp = await rig.sender.event(reply)
    assert resp.status == 200
    frame = await _agent_frame(visitor)
    assert frame["text"] == "Yes! Delivery takes 2 days."
    assert frame["author"] == "Ana Lima" and frame["avatar_url"] == "https://avatars.example/UANA_192.png"

    await visitor.say("Great, and to Porto?", "c2")
    follow_up = await eventually(lambda: rig.fake.thread(CHANNEL, root["ts"]))
    assert follow_up[0]["text"] == "Great, and to Porto?" and follow_up[0]["username"] == "Visitor"


async def test_a_retried_event_reaches_the_visitor_once(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    await visitor.say("hello?", "c1")
    root = await _root(rig)
    body = event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Hi there"))
    assert (await rig.sender.event(body)).status == 200
    await _agent_frame(visitor)
    assert (await rig.sender.event(body, retry_num=1)).status == 200
    assert (await rig.sender.event(body, retry_num=2)).status == 200
    later = [f for f in await visitor.quiet(0.6) if f["type"] == "message"]
    assert later == []
    async with rig.services.db.read() as session:
        count = (await session.execute(select(func.count()).select_from(Message).where(Message.sender == "agent"))).scalar_one()
    assert count == 1


async def test_a_429_on_post_is_retried_after_retry_after_and_posted_once(rig: SlackRig, widget):
    rig.fake.rate_limit("chat.postMessage", retry_after=1)
    visitor = await Visitor.connect(rig.client, widget.key)
    await visitor.say("anyone?", "c1")
    posts = await eventually(lambda: rig.fake.posts(CHANNEL), timeout=6)
    assert len(posts) == 1
    attempts = [c.status for c in rig.fake.calls_of("chat.postMessage")]
    assert attempts == [429, 200]

    async def delivered() -> OutboxItem | None:
        async with rig.services.db.read() as session:
            [item] = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "slack.relay"))).scalars()
        return item if item.status == "done" else None

    assert (await eventually(delivered)).attempts == 2
    async with rig.services.db.read() as session:
        logged = list((await session.execute(select(DeliveryAttempt).order_by(DeliveryAttempt.id))).scalars())
    assert [a.status_code for a in logged] == [429, 200]
    gap = (logged[1].started_at - logged[0].finished_at).total_seconds()
    assert gap >= 0.9  # Slack asked for 1 s


async def test_lines_written_in_the_console_are_mirrored_into_the_thread_with_the_agents_name(rig: SlackRig, widget):
    from core.agents import create_agent

    async with rig.services.db.write() as session:
        agent = await create_agent(session, {"name": "Carla Console", "email": "carla@example.com"})
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say("hi", "c1")
    root = await _root(rig)
    await rig.services.chat.agent_message(ack["conversation_id"], "Hello from the console", agent_id=agent.id)
    await rig.services.chat.agent_message(ack["conversation_id"], "note: checked the order", agent_id=agent.id)
    replies = await eventually(lambda: len(rig.fake.thread(CHANNEL, root["ts"])) == 2 and rig.fake.thread(CHANNEL, root["ts"]))
    assert replies[0]["text"] == "*Carla Console* (console): Hello from the console"
    assert replies[1]["text"] == ":memo: *Note* by Carla Console: note: checked the order"
    await rig.services.chat.claim(ack["conversation_id"], agent.id)
    await eventually(lambda: "Claimed by *Carla Console*" in str(rig.fake.posts(CHANNEL)[0]["blocks"]))


async def test_a_reply_is_not_lost_when_slack_cannot_say_who_wrote_it(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    await visitor.say("hello", "c1")
    root = await _root(rig)
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "first")))
    assert (await _agent_frame(visitor))["author"] == "Ana Lima"
    rig.adapter.directory.clock = lambda: time.monotonic() + 3600  # an hour later: the cached profile expired
    rig.fake.fail("users.info", "internal_error", status=500, times=5)
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "second")))
    frame = await _agent_frame(visitor)
    assert (frame["text"], frame["author"]) == ("second", "Ana Lima")
