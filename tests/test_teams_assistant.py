"""The AI assistant seen from a Teams reply chain: "Take over" (Action.Submit and invoke) and a
human reply both silence it; later visitor messages still reach the chain.

The real Agents SDK against the fake Bot Connector; the outbox worker runs the
Teams deliveries and the assistant's ``ai.reply`` rows, as ``deskbell worker`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from core.dispatch import Dispatcher
from core.kb_import import read_path
from core.knowledge import import_entries
from core.models import AssistantThread, Message, OutboxItem
from core.services import Services
from core.widgets import create_widget
from adapters.teams.adapter import TeamsAdapter
from bot.seed import SAMPLE_KB
from tests.conftest import eventually
from tests.fakes.bot_connector import FakeBotConnector, card_invoke, channel_message
from tests.test_teams import ANA, BEN, bound_channel, card_of, card_text, client, count, fake, post, relayed_chain, teams  # noqa: F401
from tests.widget_client import Visitor

EMBED_QUESTION = "How can I put the chat widget on my website?"


@pytest.fixture
async def working(services: Services, teams: TeamsAdapter):  # type: ignore[no-untyped-def]  # noqa: F811
    """The worker: Teams deliveries and the assistant's answers."""
    dispatcher = Dispatcher(services.db, services.bus, poll_s=0.05)
    teams.register_outbox(dispatcher)
    assert services.assistant is not None
    dispatcher.register("ai.reply", services.assistant.handle)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    yield dispatcher
    stop.set()
    await task


@pytest.fixture
async def widget(services: Services):  # type: ignore[no-untyped-def]
    """A widget whose assistant answers: nobody is on duty."""
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "ai_enabled": True})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    await services.watcher.refresh()
    return widget


async def _from(visitor: Visitor, sender: str) -> dict[str, Any]:
    while True:
        frame = await visitor.next("message", timeout=5)
        if frame["from"] == sender:
            return frame


def _lines(fake: FakeBotConnector, chain: str) -> list[str]:  # noqa: F811
    return [a.get("text", "") for a in fake.chain(chain)[1:]]


async def _assistant(services: Services, conversation_id: int) -> tuple[str, str | None]:
    async with services.db.read() as session:
        thread = await session.get(AssistantThread, conversation_id)
    assert thread is not None
    return thread.status, thread.reason


async def _ai_replies(services: Services) -> int:
    async with services.db.read() as session:
        query = select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "ai.reply")
        return int((await session.execute(query)).scalar_one())


async def _chat_with_an_answer(client, fake, widget, services):  # type: ignore[no-untyped-def]  # noqa: F811
    await bound_channel(client, fake)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    answer = await _from(visitor, "bot")
    chain = await relayed_chain(services)
    await eventually(lambda: any("Paste one script tag" in line for line in _lines(fake, chain)))
    return visitor, ack["conversation_id"], chain, answer


async def test_take_over_from_the_card_silences_the_assistant_and_says_who(client, fake, widget, services, working):  # noqa: F811
    visitor, conversation_id, chain, _answer = await _chat_with_an_answer(client, fake, widget, services)
    assert "(AI): Paste one script tag" in _lines(fake, chain)[0]  # the assistant's line in the chain, labelled
    assert [a["title"] for a in card_of(fake.chain(chain)[0])["actions"]] == ["Claim", "Take over", "Close"]

    take_over = {"deskbell": "take_over", "conversation_id": conversation_id}
    await post(client, channel_message(fake.service_url, ANA, "", thread=chain, value=take_over))
    assert await _assistant(services, conversation_id) == ("stopped", "taken_over")
    note = await eventually(lambda: [line for line in _lines(fake, chain) if "took over" in line])
    assert note == ["Ana Lima took over from the assistant: it stays quiet in this chat now. Reply here to answer the visitor."]
    # The card the button was on, rebuilt at once, and through the outbox like every bound channel's root.
    updates = await eventually(lambda: len(fake.of_kind("update")) == 2 and fake.of_kind("update"))
    assert {u.activity_id for u in updates} == {fake.chains[chain][0]}
    root = card_of(fake.chain(chain)[0])
    assert [a["title"] for a in root["actions"]] == ["Claim", "Close"]
    assert "Waiting for an agent" in card_text(root) and EMBED_QUESTION in card_text(root)

    await visitor.say("Does deskbell have a REST API?", "c2")
    await eventually(lambda: any("Does deskbell have a REST API?" in line for line in _lines(fake, chain)))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _ai_replies(services) == 1

    # Ben presses it too, on a client that sends Universal Actions: nothing changes, he is told why.
    resp = await post(client, card_invoke(fake.service_url, BEN, chain, "take_over", conversation_id))
    assert (await resp.json())["value"] == "The assistant is already quiet here: someone already took over."
    assert len([line for line in _lines(fake, chain) if "took over from" in line]) == 1


async def test_take_over_as_an_invoke_works_like_the_submit_button(client, fake, widget, services, working):  # noqa: F811
    _visitor, conversation_id, chain, _answer = await _chat_with_an_answer(client, fake, widget, services)
    resp = await post(client, card_invoke(fake.service_url, BEN, chain, "take_over", conversation_id))
    assert (await resp.json())["statusCode"] == 200
    assert await _assistant(services, conversation_id) == ("stopped", "taken_over")
    assert await eventually(lambda: [line for line in _lines(fake, chain) if line.startswith("Ben Okafor took over")])


async def test_a_reply_in_the_chain_stops_the_assistant(client, fake, widget, services, working):  # noqa: F811
    visitor, conversation_id, chain, _answer = await _chat_with_an_answer(client, fake, widget, services)
    await post(client, channel_message(fake.service_url, ANA, "Hi, Ana here.", thread=chain))
    assert (await _from(visitor, "agent"))["text"] == "Hi, Ana here."
    assert await _assistant(services, conversation_id) == ("stopped", "agent_replied")

    await visitor.say("Does deskbell have a REST API?", "c2")
    await eventually(lambda: any("Does deskbell have a REST API?" in line for line in _lines(fake, chain)))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _ai_replies(services) == 1


async def test_a_note_in_the_chain_leaves_the_assistant_answering_and_a_reply_then_stops_it(client, fake, widget, services, working):  # noqa: F811
    visitor, conversation_id, chain, _answer = await _chat_with_an_answer(client, fake, widget, services)

    # An internal line is for colleagues: the visitor never sees it, so nobody has answered them yet.
    await post(client, channel_message(fake.service_url, ANA, "!checking the order history", thread=chain))
    await eventually(lambda: count(services, Message, Message.internal.is_(True)))
    assert await _assistant(services, conversation_id) == ("active", None)
    await visitor.say("Does deskbell have a REST API?", "c2")
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["from"] != "bot":
        frames.append(await visitor.next("message", timeout=5))
    assert [f["from"] for f in frames] == ["visitor", "bot"]  # the assistant answered; the note never reached the visitor
    assert await _ai_replies(services) == 2
    assert "Take over" in [a["title"] for a in card_of(fake.chain(chain)[0])["actions"]]

    # A line that reaches the visitor stops it.
    await post(client, channel_message(fake.service_url, ANA, "Hi, Ana here.", thread=chain))
    assert (await _from(visitor, "agent"))["text"] == "Hi, Ana here."
    assert await _assistant(services, conversation_id) == ("stopped", "agent_replied")
    await visitor.say("And a Slack app?", "c3")
    await eventually(lambda: any("And a Slack app?" in line for line in _lines(fake, chain)))
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []
    assert await _ai_replies(services) == 2
