"""The AI assistant seen from a Slack thread: its lines, "Take over", a human reply, the handoff.

The whole app against the fake Slack, the outbox worker answering ``ai.reply``
rows as ``deskbell worker`` does; clicks and thread replies are signed as
Slack signs them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from core.agents import create_agent
from core.kb_import import read_path
from core.knowledge import import_entries
from core.models import AssistantThread, Message, OutboxItem, ThreadLink
from core.services import Services
from core.widgets import create_widget
from bot.seed import SAMPLE_KB
from adapters.slack.text import escape
from tests.conftest import eventually
from tests.fakes.slack_api import action_form, event_body, thread_reply
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.widget_client import Visitor

CHANNEL = "C0SUPPORT"
EMBED_QUESTION = "How can I put the chat widget on my website?"
EMBED_ANSWER = "Paste one script tag"


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    async with slack_rig(services, aiohttp_client, aiohttp_server) as rig:
        rig.fake.add_user("UANA", "Ana Lima", email="ana@example.com")
        rig.fake.add_user("UBEN", "Ben Ode", email="ben@example.com")
        yield rig


async def _ai_widget(rig: SlackRig, **fields: Any):  # type: ignore[no-untyped-def]
    async with rig.services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "ai_enabled": True, **fields})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    await rig.bind(widget.id, CHANNEL)
    await rig.services.watcher.refresh()
    return widget


@pytest.fixture
async def widget(rig: SlackRig):  # type: ignore[no-untyped-def]
    """A widget whose assistant answers: nobody is on duty."""
    return await _ai_widget(rig)


async def _root(rig: SlackRig) -> dict[str, Any]:
    async def linked() -> dict[str, Any] | None:
        async with rig.services.db.read() as session:
            link = (await session.execute(select(ThreadLink))).scalar_one_or_none()
        return link and rig.fake.messages.get((CHANNEL, link.root_ref))

    return await eventually(linked)


def _buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def _from(visitor: Visitor, sender: str) -> dict[str, Any]:
    while True:
        frame = await visitor.next("message", timeout=5)
        if frame["from"] == sender:
            return frame


def _thread_texts(rig: SlackRig, root: dict[str, Any]) -> list[str]:
    return [m["text"] for m in rig.fake.thread(CHANNEL, root["ts"])]


async def _count(rig: SlackRig, model: Any, *where: Any) -> int:
    async with rig.services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def _assistant(rig: SlackRig, conversation_id: int) -> tuple[str, str | None]:
    async with rig.services.db.read() as session:
        thread = await session.get(AssistantThread, conversation_id)
    assert thread is not None
    return thread.status, thread.reason


async def test_the_assistants_answers_appear_in_the_thread_under_its_name(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")
    answer = await _from(visitor, "bot")
    root = await _root(rig)
    lines = await eventually(lambda: _thread_texts(rig, root))
    assert lines == [f":robot_face: *Assistant* (AI): {escape(answer['text'])}"]


async def test_take_over_silences_the_assistant_says_who_in_the_thread_and_drops_the_button(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    assert EMBED_ANSWER in (await _from(visitor, "bot"))["text"]
    root = await _root(rig)
    await eventually(lambda: _thread_texts(rig, root))  # the answer is in the thread
    assert "deskbell_take_over" in _buttons(root)  # the root offers it while the assistant answers

    click = action_form("deskbell_take_over", str(ack["conversation_id"]), user="UANA", channel=CHANNEL, message_ts=root["ts"])
    assert (await rig.sender.action(click)).status == 200
    note = await eventually(lambda: [t for t in _thread_texts(rig, root) if "took over" in t])
    assert note == [
        ":raising_hand: *Ana Lima* took over from the assistant: it stays quiet in this chat now. "
        "Reply in the thread to answer the visitor."
    ]
    # Rebuilt at once where it was pressed, and through the outbox like every bound channel's root.
    updates = await eventually(lambda: len(rig.fake.calls_of("chat.update")) == 2 and rig.fake.calls_of("chat.update"))
    assert {u.args["ts"] for u in updates} == {root["ts"]}
    refreshed = rig.fake.messages[(CHANNEL, root["ts"])]
    assert _buttons(refreshed) == ["deskbell_claim", "deskbell_close"]
    assert EMBED_QUESTION in json.dumps(refreshed["blocks"]) and "Waiting for someone" in json.dumps(refreshed["blocks"])
    assert await _assistant(rig, ack["conversation_id"]) == ("stopped", "taken_over")

    # The visitor's next question reaches the thread and gets no AI answer.
    await visitor.say("Does deskbell have a REST API?", "c2")
    await eventually(lambda: "Does deskbell have a REST API?" in _thread_texts(rig, root))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _count(rig, OutboxItem, OutboxItem.kind == "ai.reply") == 1

    # A second click (Ben was slower) changes nothing and says why, to him only.
    late = action_form("deskbell_take_over", str(ack["conversation_id"]), user="UBEN", channel=CHANNEL, message_ts=root["ts"])
    assert (await rig.sender.action(late)).status == 200
    [told] = await eventually(lambda: rig.fake.calls_of("chat.postEphemeral"))
    assert told.args["user"] == "UBEN" and "someone already took over" in told.args["text"]
    assert len([t for t in _thread_texts(rig, root) if "took over" in t]) == 1


async def test_take_over_on_a_closed_chat_is_refused(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await _from(visitor, "bot")
    root = await _root(rig)
    await rig.services.chat.close(ack["conversation_id"])
    click = action_form("deskbell_take_over", str(ack["conversation_id"]), user="UANA", channel=CHANNEL, message_ts=root["ts"])
    await rig.sender.action(click)
    [told] = await eventually(lambda: rig.fake.calls_of("chat.postEphemeral"))
    assert "closed" in told.args["text"]
    assert await _assistant(rig, ack["conversation_id"]) == ("active", None)


async def test_a_reply_in_the_thread_stops_the_assistant_and_later_questions_reach_the_thread(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await _from(visitor, "bot")
    root = await _root(rig)
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Hi, Ana here. Need more help?")))
    assert (await _from(visitor, "agent"))["text"] == "Hi, Ana here. Need more help?"
    assert await _assistant(rig, ack["conversation_id"]) == ("stopped", "agent_replied")

    await visitor.say("Does deskbell have a REST API?", "c2")
    await eventually(lambda: "Does deskbell have a REST API?" in _thread_texts(rig, root))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _count(rig, OutboxItem, OutboxItem.kind == "ai.reply") == 1


async def test_a_note_in_the_thread_leaves_the_assistant_answering_and_a_reply_then_stops_it(rig: SlackRig, widget):
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await _from(visitor, "bot")
    root = await _root(rig)
    await eventually(lambda: _thread_texts(rig, root))

    # An internal note is for colleagues: the visitor never sees it, so nobody has answered them yet.
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "note: she asked about this last week")))
    await eventually(lambda: _count(rig, Message, Message.internal.is_(True)))
    assert await _assistant(rig, ack["conversation_id"]) == ("active", None)
    await visitor.say("Does deskbell have a REST API?", "c2")
    frames = []
    while not frames or frames[-1]["from"] != "bot":
        frames.append(await visitor.next("message", timeout=5))
    assert [f["from"] for f in frames] == ["visitor", "bot"]  # the assistant answered; the note never reached the visitor
    assert await _count(rig, OutboxItem, OutboxItem.kind == "ai.reply") == 2
    assert "deskbell_take_over" in _buttons(rig.fake.messages[(CHANNEL, root["ts"])])

    # A line that reaches the visitor stops it.
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Hi, Ana here.")))
    assert (await _from(visitor, "agent"))["text"] == "Hi, Ana here."
    assert await _assistant(rig, ack["conversation_id"]) == ("stopped", "agent_replied")
    await visitor.say("And a Teams app?", "c3")
    await eventually(lambda: "And a Teams app?" in _thread_texts(rig, root))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _count(rig, OutboxItem, OutboxItem.kind == "ai.reply") == 2


async def test_a_handoff_leaves_the_ai_transcript_in_the_thread_for_the_agent(rig: SlackRig):
    widget = await _ai_widget(rig, ai_always=True)
    async with rig.services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": "ana@example.com"})
    await rig.services.chat.set_duty(agent.id, True)
    await rig.services.watcher.refresh()
    visitor = await Visitor.connect(rig.client, widget.key)
    assert visitor.welcome["status"]["online"] is True and visitor.welcome["status"]["mode"] == "ai"

    ack = await visitor.say(EMBED_QUESTION, "c1")
    answer = await _from(visitor, "bot")
    await visitor.say("I want to talk to a human", "c2")
    handoff = await _from(visitor, "bot")
    assert handoff["actions"] == [{"type": "handoff"}]
    assert await _assistant(rig, ack["conversation_id"]) == ("handed_off", "asked_for_human")

    root = await _root(rig)
    assert EMBED_QUESTION in json.dumps(root["blocks"])  # the first question opens the thread
    expected = [
        f":robot_face: *Assistant* (AI): {escape(answer['text'])}",
        "I want to talk to a human",
        f":robot_face: *Assistant* (AI): {escape(handoff['text'])}",
    ]
    assert await eventually(lambda: _thread_texts(rig, root) == expected and expected)
    # The root is refreshed (its "Take over" goes once the relay shows it): planned with the handoff.
    [update] = await eventually(lambda: rig.fake.calls_of("chat.update"))
    assert update.args["ts"] == root["ts"]

    # The agent answers in the thread; the assistant stays out of it.
    await rig.sender.event(event_body(thread_reply(CHANNEL, root["ts"], "UANA", "Hi! Ana here.")))
    assert (await _from(visitor, "agent"))["text"] == "Hi! Ana here."
    await visitor.say("thanks, and is there an API?", "c3")
    await eventually(lambda: "thanks, and is there an API?" in _thread_texts(rig, root))
    assert [f for f in await visitor.quiet(0.6) if f["type"] == "message" and f["from"] == "bot"] == []
