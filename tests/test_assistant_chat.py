"""The assistant end to end: a visitor on an "ai"-mode widget talks over the WebSocket and
the worker (the outbox dispatcher) answers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from adapters.embeddings import default_embedder
from adapters.llm.openai_chat import OpenAIChat
from core.agents import create_agent
from core.assistant_state import add_usage, update_config
from core.dispatch import Dispatcher
from core.embedding import GuardedEmbedder
from core.knowledge import import_entries
from core.kb_import import read_path
from core.leads import LEAD_CREATED
from core.llm import LLMReply, LLMRequest, Providers
from core.models import AssistantThread, Message, OfflineMessage, OutboxItem
from core.services import Services
from core.widgets import create_widget
from bot.seed import SAMPLE_KB
from tests.conftest import eventually
from tests.fakes.openai_api import FakeOpenAI
from tests.widget_client import Visitor

EMBED_QUESTION = "How can I put the chat widget on my website?"
EMBED_ANSWER = "Paste one script tag"


@pytest.fixture
async def widget(services: Services):  # type: ignore[no-untyped-def]
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Deskbell demo", "ai_enabled": True})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    await services.watcher.refresh()
    return widget


@pytest.fixture
async def worker(services: Services) -> AsyncIterator[Dispatcher]:
    """The outbox worker with the assistant's handler, as `deskbell worker` runs it."""
    dispatcher = Dispatcher(services.db, services.bus, poll_s=0.05)
    assert services.assistant is not None
    dispatcher.register("ai.reply", services.assistant.handle)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    yield dispatcher
    stop.set()
    await task


@pytest.fixture
async def openai_fake(services: Services) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    provider = OpenAIChat(api_key="sk-test", base_url=f"{fake.url}/v1", model="gpt-test", max_retries=0, timeout_s=5)
    assert services.assistant is not None
    services.assistant.providers = Providers({"openai": provider}, "openai")
    yield fake
    await provider.close()
    await fake.close()


async def _agent_on_duty(services: Services, email: str = "ana@example.com") -> int:
    async with services.db.write() as session:
        agent = await create_agent(session, {"name": "Ana Lima", "email": email})
    await services.chat.set_duty(agent.id, True)
    await services.watcher.refresh()
    return agent.id


async def bot_reply(visitor: Visitor, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame = await visitor.next("message", timeout=timeout)
        if frame["from"] == "bot":
            return frame


async def _count(services: Services, model: Any, *where: Any) -> int:
    async with services.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def test_a_kb_question_gets_typing_then_the_answer_from_the_knowledge_base(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["mode"] == "ai"
    await visitor.say(EMBED_QUESTION, "c1")
    typing = await visitor.next("typing")
    assert typing == {"type": "typing", "from": "bot", "author": "Assistant", "active": True}
    reply = await bot_reply(visitor)
    assert EMBED_ANSWER in reply["text"] and reply["author"] == "Assistant" and reply["seq"] == 2
    frames = [f["type"] for f in visitor.frames]
    assert frames.index("typing") < len(frames) - 1  # typing came before the answer
    rest = await visitor.quiet(0.3)
    assert [f for f in rest if f["type"] == "message"] == []  # one answer, no "we're offline" notice beside it
    assert [f for f in rest if f["type"] == "typing"] == [{"type": "typing", "from": "bot", "author": "Assistant", "active": False}]


class GatedModel:
    """The shipped model behind a gate the test opens: an index build that embeds is
    reliably still running when the visitor asks. Vectors come from the real model."""

    name = "gated all-MiniLM-L6-v2"

    def __init__(self) -> None:
        self.model = GuardedEmbedder.of(default_embedder())  # its vector cache: warm after earlier tests
        self.entered = threading.Event()
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(timeout=60)  # never hang a test run
        vectors = self.model.embed(texts)
        assert vectors is not None
        return vectors

    def knows(self, word: str) -> bool:
        return self.model.knows(word)


async def _answered_from(services: Services, replies: int) -> list[str] | None:
    """Which index each of the first ``replies`` assistant replies came from, once all are done."""
    async with services.db.read() as session:
        query = select(OutboxItem.result).where(OutboxItem.kind == "ai.reply", OutboxItem.status == "done")
        results = list((await session.execute(query.order_by(OutboxItem.id))).scalars())
    return [r["index"] for r in results] if len(results) == replies else None


async def test_a_question_while_the_embedding_index_builds_is_answered_from_keywords_at_once(
    client, widget, worker, services
):
    assert services.assistant is not None
    indexes = services.assistant.indexes
    model = GatedModel()
    indexes.use_embedder(model)
    loop = asyncio.get_running_loop()
    visitor = await Visitor.connect(client, widget.key)
    try:
        # The build waits at the gate for up to 60 s: a reply within 10 s did not wait for
        # it (1 s was too tight with another test process sharing the 2 CPUs).
        asked = loop.time()
        await visitor.say(EMBED_QUESTION, "c1")
        assert (await visitor.next("typing", timeout=10.0))["active"] is True
        reply = await bot_reply(visitor, timeout=10.0)
        assert loop.time() - asked < 10.0 and EMBED_ANSWER in reply["text"]
        # The full build runs in a thread of its own and reaches the model after its keyword
        # work, which can take longer than the keyword answer did: wait for it. The gate is
        # still shut, so the answer above cannot have come from that build.
        assert await asyncio.to_thread(model.entered.wait, 10.0)
    finally:
        model.gate.set()
    assert (await visitor.next("typing"))["active"] is False
    async with services.db.read() as session:
        assert (await indexes.index_for(session, widget.id)).dense is not None  # joins that build
    await visitor.say("How much does deskbell cost?", "c2")
    assert "open source" in (await bot_reply(visitor))["text"]
    assert await eventually(lambda: _answered_from(services, 2)) == ["lexical", "hybrid"]


async def test_trying_a_question_while_the_embedding_index_builds_answers_at_once_and_says_how(client, widget, services):
    """The API's "try a question" answers as a visitor would be answered at that moment."""
    from tests.test_api_helpers import new_api_key

    assert services.assistant is not None
    model = GatedModel()
    services.assistant.indexes.use_embedder(model)
    headers = {"Authorization": f"Bearer {await new_api_key(services)}"}
    url = f"/api/v1/widgets/{widget.id}/knowledge/ask"
    try:
        response = await asyncio.wait_for(client.post(url, json={"question": EMBED_QUESTION}, headers=headers), 1.0)
        assert response.status == 200
        body = await response.json()
        assert body["index"] == "lexical" and EMBED_ANSWER in body["answer"]
    finally:
        model.gate.set()
    async with services.db.read() as session:
        await services.assistant.indexes.index_for(session, widget.id)  # the build is done
    response = await client.post(url, json={"question": EMBED_QUESTION}, headers=headers)
    assert (await response.json())["index"] == "hybrid"


async def test_an_abstention_switches_typing_off(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("what's the weather in paris today", "c1")
    assert (await visitor.next("typing"))["active"] is True
    assert "don't know" in (await bot_reply(visitor))["text"]
    assert (await visitor.next("typing"))["active"] is False
    assert [f for f in await visitor.quiet(0.3) if f["type"] == "typing"] == []


class BrokenProvider:
    """A language-model client with a bug: it raises what no provider error covers."""

    name = "broken"
    model = "broken-1"

    async def complete(self, request: LLMRequest) -> LLMReply:
        raise RuntimeError("a bug in the client")

    async def close(self) -> None:
        pass


async def test_an_error_while_answering_switches_typing_off(client, widget, worker, services):
    services.assistant.providers = Providers({"broken": BrokenProvider()}, "broken")  # type: ignore[union-attr]
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")  # confident: it reaches the model, which fails
    assert (await visitor.next("typing"))["active"] is True
    assert (await visitor.next("typing"))["active"] is False
    assert [f for f in await visitor.quiet(0.3) if f["type"] == "message" and f["from"] == "bot"] == []


async def test_an_unanswerable_question_gets_i_dont_know_and_the_prefilled_form(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("what's the weather in paris today", "c1")
    reply = await bot_reply(visitor)
    assert "don't know" in reply["text"] and "email" in reply["text"]
    assert reply["actions"] == [
        {"type": "offline_form", "prefill": {"name": None, "email": None, "message": "what's the weather in paris today"}}
    ]


async def test_the_visitor_leaves_an_email_in_the_chat_and_a_lead_is_stored(client, widget, worker, services):
    leads: list[dict[str, Any]] = []

    async def on_lead(_name: str, data: dict[str, Any]) -> None:
        leads.append(data)

    services.bus.subscribe(LEAD_CREATED, on_lead)
    visitor = await Visitor.connect(client, widget.key, page_url="https://shop.example/pricing")
    await visitor.say("do you sell gift cards for christmas", "c1")
    await bot_reply(visitor)
    await visitor.say("ana@example", "c2")
    assert "doesn't look like" in (await bot_reply(visitor))["text"]
    await visitor.say("ana@example.com", "c3")
    assert "name" in (await bot_reply(visitor))["text"]
    await visitor.say("Ana Lima", "c4")
    thanks = await bot_reply(visitor)
    assert "Ana Lima" in thanks["text"] and "ana@example.com" in thanks["text"]
    async with services.db.read() as session:
        [row] = (await session.execute(select(OfflineMessage))).scalars()
    assert (row.name, row.email, row.page_url) == ("Ana Lima", "ana@example.com", "https://shop.example/pricing")
    assert row.message.startswith("do you sell gift cards for christmas")
    await services.bus.drain()  # type: ignore[attr-defined]
    assert leads and leads[0]["lead"]["email"] == "ana@example.com" and leads[0]["lead"]["need"] == "do you sell gift cards for christmas"


async def test_asking_for_a_human_with_an_agent_available_hands_the_chat_over(client, services, worker):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "ai_enabled": True, "ai_always": True})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    agent_id = await _agent_on_duty(services)
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"] == {**visitor.welcome["status"], "online": True, "mode": "ai"}
    ack = await visitor.say("I want to talk to a human", "c1")
    reply = await bot_reply(visitor)
    assert "getting someone" in reply["text"] and reply["actions"] == [{"type": "handoff"}]
    async with services.db.read() as session:
        thread = await session.get(AssistantThread, ack["conversation_id"])
    assert thread is not None and (thread.status, thread.reason) == ("handed_off", "asked_for_human")
    # From now on the people answer: no ai.reply is planned, the agent's reply arrives.
    await visitor.say(EMBED_QUESTION, "c2")
    await services.chat.agent_message(ack["conversation_id"], "Hi, Ana here!", agent_id=agent_id)
    frame = await visitor.next("message")
    while frame["from"] != "agent":
        assert frame["from"] != "bot"
        frame = await visitor.next("message")
    assert await _count(services, OutboxItem, OutboxItem.kind == "ai.reply") == 1


async def test_a_human_reply_stops_the_assistant_for_that_conversation(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await bot_reply(visitor)
    await services.chat.agent_message(ack["conversation_id"], "I'll take it from here.", author="Bo")
    await visitor.say("Does deskbell have a REST API?", "c2")
    later = await visitor.quiet(0.8)
    assert [f for f in later if f["type"] == "message" and f["from"] == "bot"] == []
    async with services.db.read() as session:
        thread = await session.get(AssistantThread, ack["conversation_id"])
    assert thread is not None and (thread.status, thread.reason) == ("stopped", "agent_replied")


async def test_an_internal_note_leaves_the_assistant_answering(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await bot_reply(visitor)
    for note in ("note: VIP customer", "!check the CRM first"):
        await services.chat.agent_message(ack["conversation_id"], note, author="Bo")
    await visitor.say("Does deskbell have a REST API?", "c2")
    await bot_reply(visitor)  # the visitor got no answer from a person: the assistant still answers
    async with services.db.read() as session:
        thread = await session.get(AssistantThread, ack["conversation_id"])
    assert thread is not None and (thread.status, thread.reason) == ("active", None)


async def test_take_over_stops_the_assistant_without_a_reply(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await bot_reply(visitor)
    assert await services.chat.take_over(ack["conversation_id"]) is True
    assert await services.chat.take_over(ack["conversation_id"]) is False
    await visitor.say("Does deskbell have a REST API?", "c2")
    assert [f for f in await visitor.quiet(0.6) if f["type"] == "message" and f["from"] == "bot"] == []


async def test_with_a_model_the_answer_is_phrased_by_it_from_the_retrieved_passages(client, widget, worker, services, openai_fake):
    openai_fake.answer("Add one script tag to your pages and the chat appears.")
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")
    reply = await bot_reply(visitor)
    assert reply["text"] == "Add one script tag to your pages and the chat appears."
    [sent] = openai_fake.requests
    system = sent.body["messages"][0]["content"]
    assert "ONLY" in system and "NO_ANSWER" in system and "Paste one script tag" in system
    assert sent.body["messages"][-1] == {"role": "user", "content": EMBED_QUESTION}
    async with services.db.read() as session:
        from core.assistant_state import tokens_used

        assert await tokens_used(session, widget.id) > 0


async def test_a_low_confidence_question_never_reaches_the_model(client, widget, worker, services, openai_fake):
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("who won the world cup in 2018", "c1")
    assert "don't know" in (await bot_reply(visitor))["text"]
    assert openai_fake.requests == []


async def test_the_model_saying_no_answer_becomes_i_dont_know(client, widget, worker, services, openai_fake):
    openai_fake.answer("NO_ANSWER")
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")
    reply = await bot_reply(visitor)
    assert "don't know" in reply["text"] and reply["actions"][0]["type"] == "offline_form"


@pytest.mark.parametrize("failure", ["error", "timeout"])
async def test_a_failing_or_slow_provider_still_gives_the_visitor_the_kb_answer(client, widget, worker, services, openai_fake, failure):
    if failure == "error":
        openai_fake.fail(500, times=None)
    else:
        services.assistant.timeout_s = 0.3  # type: ignore[union-attr]
        openai_fake.stall(3.0, times=None)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")
    reply = await bot_reply(visitor, timeout=6)
    assert EMBED_ANSWER in reply["text"]


async def test_past_the_daily_token_budget_the_assistant_answers_retrieval_only(client, widget, worker, services, openai_fake):
    async with services.db.write() as session:
        await update_config(session, widget.id, {"daily_token_budget": 100})
        await add_usage(session, widget.id, 100)
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say(EMBED_QUESTION, "c1")
    assert EMBED_ANSWER in (await bot_reply(visitor))["text"]
    assert openai_fake.requests == []


async def test_the_booking_link_is_answered_with_a_link_action(client, widget, worker, services):
    async with services.db.write() as session:
        await update_config(session, widget.id, {"booking_link": "https://cal.example/deskbell"})
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("Can I book a demo call?", "c1")
    reply = await bot_reply(visitor)
    assert "https://cal.example/deskbell" in reply["text"]
    assert reply["actions"] == [{"type": "link", "label": "Book a time", "url": "https://cal.example/deskbell"}]


async def test_a_conversation_gets_at_most_its_replies_per_minute(client, widget, worker, services):
    async with services.db.write() as session:
        await update_config(session, widget.id, {"replies_per_minute": 2})
    visitor = await Visitor.connect(client, widget.key)
    for n, question in enumerate(["hello", "Does deskbell have a REST API?", "How do I back up my data?"]):
        await visitor.say(question, f"c{n}")
    await bot_reply(visitor)
    await bot_reply(visitor)
    assert [f for f in await visitor.quiet(0.8) if f["type"] == "message" and f["from"] == "bot"] == []


async def test_each_visitor_message_is_answered_once_even_if_the_row_is_delivered_twice(client, widget, worker, services):
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await bot_reply(visitor)
    async with services.db.read() as session:
        [item] = (await session.execute(select(OutboxItem).where(OutboxItem.kind == "ai.reply"))).scalars()
    outcome = await services.assistant.handle(item)  # type: ignore[union-attr]
    assert outcome.ok and "nothing to do" in (outcome.detail or "")
    assert await _count(services, Message, Message.conversation_id == ack["conversation_id"], Message.sender == "bot") == 1


async def test_a_live_widget_without_ai_always_plans_no_assistant_reply(client, services, worker):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Live", "ai_enabled": True})
    await _agent_on_duty(services, "bo@example.com")
    visitor = await Visitor.connect(client, widget.key)
    assert visitor.welcome["status"]["mode"] == "live"
    await visitor.say("hello", "c1")
    assert [f for f in await visitor.quiet(0.5) if f["type"] in {"typing", "message"} and f.get("from") == "bot"] == []
    assert await _count(services, OutboxItem, OutboxItem.kind == "ai.reply") == 0


async def test_the_try_endpoint_and_the_visitor_get_the_same_answer(client, widget, services):
    result = await services.assistant.ask(widget, EMBED_QUESTION)  # type: ignore[union-attr]
    assert result["kind"] == "answer" and EMBED_ANSWER in result["answer"] and result["provider"] == "retrieval"
    assert result["matches"][0]["title"] == "How do I add the chat widget to my website?"
    assert await _count(services, Message) == 0  # nothing stored


async def test_an_agent_replying_while_the_model_thinks_wins_and_the_bot_stays_quiet(client, widget, worker, services, openai_fake):
    openai_fake.stall(1.0)
    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await visitor.next("typing")
    await services.chat.agent_message(ack["conversation_id"], "Let me help you myself.", author="Bo")
    frames = await visitor.quiet(2.0)
    assert "bot" not in [f["from"] for f in frames if f["type"] == "message"]
    assert await _count(services, Message, Message.sender == "bot") == 0


async def test_the_assistants_own_lines_follow_the_language_the_widget_sent(client, widget, worker, services):
    async with services.db.write() as session:
        await update_config(session, widget.id, {"booking_link": "https://cal.example/deskbell"})
    visitor = await Visitor.connect(client, widget.key, language="es-ES")
    await visitor.say("what's the weather in paris today", "c1")
    reply = await bot_reply(visitor)
    assert reply["text"].startswith("Lo siento, no sé la respuesta.") and "email" in reply["text"]
    await visitor.say("Can I book a demo call?", "c2")
    booking = await bot_reply(visitor)
    assert booking["text"] == "Puedes reservar una cita con nosotros aquí: https://cal.example/deskbell"
    assert booking["actions"] == [{"type": "link", "label": "Reservar una cita", "url": "https://cal.example/deskbell"}]


async def test_the_take_over_button_is_offered_while_the_assistant_may_answer(client, widget, worker, services):
    from core.assistant_state import assistant_answering
    from core.models import Conversation, Widget

    async def offered(conversation_id: int) -> bool:
        async with services.db.read() as session:
            conv = await session.get(Conversation, conversation_id)
            row = await session.get(Widget, conv.widget_id)
            return await assistant_answering(session, conv, row)

    visitor = await Visitor.connect(client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    await bot_reply(visitor)
    assert await offered(ack["conversation_id"]) is True
    await services.chat.take_over(ack["conversation_id"])
    assert await offered(ack["conversation_id"]) is False

    async with services.db.write() as session:
        plain = await create_widget(session, {"name": "No AI"})
    other = await Visitor.connect(client, plain.key)
    assert await offered((await other.say("hello", "c1"))["conversation_id"]) is False  # no assistant on that widget
    third = await Visitor.connect(client, widget.key)
    ack3 = await third.say("hello", "c1")
    await services.chat.claim(ack3["conversation_id"], await _agent_on_duty(services))
    assert await offered(ack3["conversation_id"]) is False  # claimed: a person has it
    live = await Visitor.connect(client, widget.key)
    assert live.welcome["status"]["mode"] == "live"  # Ana is on duty now
    assert await offered((await live.say("hello", "c1"))["conversation_id"]) is False  # the assistant was not asked
