"""Inbound Slack requests: signatures, thread replies, edits, deletions, what is ignored."""

from __future__ import annotations

import json
import time

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from core.models import Agent, AgentIdentity, Message
from core.services import Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.fakes.slack_api import BOT_ID, SIGNING_SECRET, event_body, sign, thread_reply
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.widget_client import Visitor

CHANNEL = "C0SUPPORT"


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    async with slack_rig(services, aiohttp_client, aiohttp_server) as rig:
        rig.fake.add_user("UANA", "Ana Lima", email="ana@example.com")
        yield rig


@pytest.fixture
async def chat(rig: SlackRig):  # type: ignore[no-untyped-def]
    """A visitor with an open conversation whose thread root is in the channel."""
    async with rig.services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    await rig.bind(widget.id, CHANNEL)
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say("hello", "c1")
    await visitor.next("message")  # the visitor's own line, echoed
    visitor.key, visitor.conversation_id = widget.key, ack["conversation_id"]  # type: ignore[attr-defined]

    async def root_linked():  # type: ignore[no-untyped-def]
        posts = rig.fake.posts(CHANNEL)
        if not posts:
            return None
        async with rig.services.db.read() as session:
            from core.models import ThreadLink

            found = (await session.execute(select(ThreadLink))).scalar_one_or_none()
        return posts[0] if found else None

    root = await eventually(root_linked)
    return visitor, root


async def _agent_lines(visitor: Visitor, n: int = 1) -> list[dict]:  # type: ignore[type-arg]
    got: list[dict] = []  # type: ignore[type-arg]
    while len(got) < n:
        frame = await visitor.next("message", "message_update", "message_delete")
        if frame["type"] != "message" or frame["from"] == "agent":
            got.append(frame)
    return got


def test_our_signatures_are_what_slack_sdk_verifies():
    body = json.dumps({"type": "event_callback", "event": {"type": "message"}})
    headers = sign(body)
    assert SignatureVerifier(SIGNING_SECRET).is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])


async def test_unsigned_stale_and_tampered_requests_are_refused(rig: SlackRig, chat):
    visitor, root = chat
    body = json.dumps(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "sneaky")))
    unsigned = await rig.sender.raw(body, "application/json")
    stale = await rig.sender.signed(body, "application/json", timestamp=int(time.time()) - 6 * 60)
    headers = sign(body)
    tampered = await rig.sender.raw(body.replace("sneaky", "evil!!"), "application/json", headers)
    wrong_secret = await rig.sender.raw(body, "application/json", sign(body, secret="not-the-secret"))
    assert [r.status for r in (unsigned, stale, tampered, wrong_secret)] == [401, 401, 401, 401]
    assert [f for f in await visitor.quiet(0.4) if f["type"] == "message"] == []


async def test_first_reply_creates_the_agent_linked_by_email(rig: SlackRig, chat, services: Services):
    visitor, root = chat
    async with services.db.write() as session:
        session.add(Agent(name="Ana (CLI)", email="ana@example.com", on_duty=False, stay_available=False))
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Hello from Slack")))
    [frame] = await _agent_lines(visitor)
    assert frame["author"] == "Ana Lima"
    async with services.db.read() as session:
        agents = list((await session.execute(select(Agent))).scalars())
        identity = (await session.execute(select(AgentIdentity))).scalar_one()
        message = (await session.execute(select(Message).where(Message.sender == "agent"))).scalar_one()
    assert len(agents) == 1 and identity.agent_id == agents[0].id == message.agent_id
    assert agents[0].last_seen_at is not None  # a reply counts as being seen


async def test_notes_and_close_follow_cores_rules(rig: SlackRig, chat, services: Services):
    visitor, root = chat
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "note: VIP customer")))

    async def note_stored() -> bool:  # Bolt handles events after acking them: wait before closing
        async with services.db.read() as session:
            return (await session.execute(select(Message).where(Message.sender == "agent"))).first() is not None

    await eventually(note_stored)
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "!close")))
    closed = await visitor.next("conversation")
    assert closed["state"] == "closed"
    assert [f for f in visitor.frames if f["type"] == "message" and f["from"] == "agent"] == []
    async with services.db.read() as session:
        [note] = (await session.execute(select(Message).where(Message.sender == "agent"))).scalars()
    assert note.internal and note.text == "note: VIP customer"
    # The root shows the conversation closed, through the outbox.
    await eventually(lambda: "Closed" in str(rig.fake.posts(CHANNEL)[0]["blocks"]))


async def test_bots_other_subtypes_and_other_threads_are_ignored(rig: SlackRig, chat, services: Services):
    visitor, root = chat
    rig.fake.add_user("UBOTX", "Other Bot", bot=True)
    ignored = [
        thread_reply(CHANNEL, root["ts"], "UANA", "from a bot", bot_id="B0OTHER", subtype="bot_message"),
        thread_reply(CHANNEL, root["ts"], "UANA", "our own post", bot_id=BOT_ID),
        thread_reply(CHANNEL, root["ts"], "UANA", "joined", subtype="channel_join"),
        thread_reply(CHANNEL, "1111111111.000001", "UANA", "another thread"),
        {"type": "message", "channel": CHANNEL, "user": "UANA", "text": "top-level chatter", "ts": f"{time.time():.6f}"},
        thread_reply("C0ELSEWHERE", root["ts"], "UANA", "another channel"),
    ]
    for event in ignored:
        assert (await rig.sender.event(event_body(event))).status == 200
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "the real one")))
    [frame] = await _agent_lines(visitor)
    assert frame["text"] == "the real one"
    async with services.db.read() as session:
        assert len(list((await session.execute(select(Message).where(Message.sender == "agent"))).scalars())) == 1


async def test_mentions_links_and_files_reach_the_visitor_as_plain_text(rig: SlackRig, chat):
    visitor, root = chat
    text = "Ask <@UANA> or see <https://shop.example/faq|our FAQ> &amp; more"
    files = [{"id": "F1", "name": "invoice.pdf", "title": "Invoice", "permalink_public": "https://slack-files.com/T-F1-abc"}]
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", text, subtype="file_share", files=files)))
    [frame] = await _agent_lines(visitor)
    assert frame["text"] == "Ask @Ana Lima or see our FAQ (https://shop.example/faq) & more\nInvoice: https://slack-files.com/T-F1-abc"


async def test_edits_and_deletions_of_a_reply_follow_it_to_the_visitor(rig: SlackRig, chat, services: Services):
    visitor, root = chat
    reply = thread_reply(CHANNEL, root["ts"], "UANA", "We close at 5pm")
    await rig.sender.event(event_body(reply))
    [frame] = await _agent_lines(visitor)
    edited = {
        "type": "message", "subtype": "message_changed", "channel": CHANNEL, "hidden": True, "ts": f"{time.time():.6f}",
        "message": {**reply, "text": "We close at 6pm", "edited": {"user": "UANA", "ts": "1"}},
        "previous_message": reply,
    }
    await rig.sender.event(event_body(edited))
    [update] = await _agent_lines(visitor)
    assert update == {"type": "message_update", "conversation_id": frame["conversation_id"], "id": frame["id"], "seq": frame["seq"], "text": "We close at 6pm"}
    deleted = {
        "type": "message", "subtype": "message_deleted", "channel": CHANNEL, "hidden": True,
        "ts": f"{time.time():.6f}", "deleted_ts": reply["ts"], "previous_message": {**reply, "text": "We close at 6pm"},
    }
    body = event_body(deleted)
    await rig.sender.event(body)
    [removal] = await _agent_lines(visitor)
    assert removal == {"type": "message_delete", "conversation_id": frame["conversation_id"], "id": frame["id"], "seq": frame["seq"]}
    await rig.sender.event(body, retry_num=1)
    assert [f for f in await visitor.quiet(0.4) if f["type"].startswith("message")] == []
    # A page reload no longer shows the deleted line; the team's record keeps it.
    again = await Visitor.connect(rig.client, visitor.key, token=visitor.welcome["token"])  # type: ignore[attr-defined]
    texts = [f["text"] for f in await again.quiet(0.5) if f["type"] == "message"]
    assert texts == ["hello"]
    async with services.db.read() as session:
        kept = (await session.execute(select(Message).where(Message.id == frame["id"]))).scalar_one()
    assert kept.internal and kept.text == "We close at 6pm"


async def test_a_reply_to_a_closed_chat_is_refused_with_an_ephemeral_note(rig: SlackRig, chat, services: Services):
    visitor, root = chat
    await services.chat.close(visitor.conversation_id)
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "too late")))
    [note] = await eventually(lambda: rig.fake.calls_of("chat.postEphemeral"))
    assert note.args["user"] == "UANA" and "closed" in note.args["text"]
