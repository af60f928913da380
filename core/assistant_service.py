"""The assistant at work: answers one visitor message, from the outbox, exactly once.

Why the outbox: a visitor message in an ``ai``-mode conversation plans an
``ai.reply`` row in the transaction that stores it, so the reply happens even
if the web process dies right after, happens once however many web processes
run, and replies of one conversation happen in order (one ordering key).

Each reply: show ``typing`` (from "bot") at once, search the knowledge base
(by keywords only while its embedding index is still being built), let the
policy (core/assistant.py) decide, ask the language model only when
retrieval is confident, and store the bot message, the conversation's new
state, token usage and any lead in one transaction. A provider that fails or
is slow never leaves the visitor without an answer: the retrieval-only
answer stands in. A person who replied meanwhile wins: nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import events as ev
from core.assistant import (
    DEFAULT_MIN_CONFIDENCE,
    Reply,
    Situation,
    ThreadState,
    answered,
    confident_hit,
    decide,
    escalate,
    not_answered,
    retrieval_answer,
    system_prompt,
)
from core.assistant_config import AssistantConfig
from core.assistant_texts import texts_for
from core.assistant_state import (
    ACTIVE,
    AI_REPLY,
    add_usage,
    get_config,
    load_thread,
    save_thread,
    stop_assistant,
    tokens_used,
)
from core.chat import ChatService
from core.clock import utcnow
from core.db import Database
from core.events import EventBus
from core.fanout import plan_root_update
from core.knowledge import IndexCache
from core.leads import LEAD_CREATED, capture_lead
from core.llm import ChatTurn, LLMError, LLMProvider, LLMRequest, Providers
from core.models import AssistantThread, Conversation, KnowledgeEntry, Message, Widget
from core.outbox import OutboxItem, Outcome
from core.retrieval import Hit, Index
from core.status import StatusWatcher

log = logging.getLogger(__name__)

KIND = AI_REPLY
TRANSCRIPT_MESSAGES = 10
MAX_TURN_CHARS = 1500
DEFAULT_TIMEOUT_S = 20.0


def match_to_json(hit: Hit) -> dict[str, Any]:
    return {
        "entry_id": hit.passage.entry_id,
        "title": hit.passage.title,
        "heading": hit.passage.heading,
        "confidence": round(hit.confidence, 3),
        "score": round(hit.score, 3),
    }


def transcript_turns(history: list[Message], current: Message) -> tuple[ChatTurn, ...]:
    """Recent visitor and assistant lines as alternating user/assistant turns, ending with the question."""
    turns: list[ChatTurn] = []
    for m in [*history, current]:
        if m.internal or m.sender not in {"visitor", "bot"}:
            continue
        role = "user" if m.sender == "visitor" else "assistant"
        text = m.text[:MAX_TURN_CHARS]
        if turns and turns[-1].role == role:
            turns[-1] = ChatTurn(role, f"{turns[-1].text}\n{text}")
        else:
            turns.append(ChatTurn(role, text))
    while turns and turns[0].role != "user":
        turns.pop(0)
    return tuple(turns)


def index_kind(index: Index) -> str:
    """Which index answered, kept in the ``ai.reply`` row's result: "hybrid" (keywords and
    embeddings) or "lexical" (keywords only: no model, or its index was still being built)."""
    return "hybrid" if index.dense is not None else "lexical"


@dataclass(frozen=True)
class _Turn:
    """One visitor message the assistant is about to answer, with what answering it needs."""

    conv: Conversation
    message: Message
    widget: Widget
    config: AssistantConfig
    state: ThreadState
    history: list[Message]


class AssistantService:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        chat: ChatService,
        watcher: StatusWatcher,
        providers: Providers | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.bus = bus
        self.chat = chat
        self.watcher = watcher
        self.providers = providers or Providers()
        self.timeout_s = timeout_s
        self.clock = clock
        self.indexes = IndexCache()

    # ------------------------------------------------------------------ the outbox handler
    async def handle(self, item: OutboxItem) -> Outcome:
        """Answer the visitor message named by an ``ai.reply`` row."""
        turn = await self._turn(int(item.payload["conversation_id"]), int(item.payload["message_id"]))
        if isinstance(turn, Outcome):
            return turn
        # Typing at once, before any retrieval work, and off again however the turn ends.
        await self.chat.typing(turn.conv, "bot", turn.config.name, True)
        try:
            return await self._answer(turn)
        finally:
            await self.chat.typing(turn.conv, "bot", turn.config.name, False)

    async def _turn(self, conversation_id: int, message_id: int) -> _Turn | Outcome:
        """What answering needs, or why there is nothing to answer (then the visitor saw nothing)."""
        async with self.db.read() as session:
            conv = await session.get(Conversation, conversation_id)
            message = await session.get(Message, message_id)
            if conv is None or message is None or conv.status != "open":
                return Outcome(True, detail="conversation closed or gone")
            thread = await session.get(AssistantThread, conversation_id)
            if thread is not None and (thread.status != ACTIVE or thread.last_answered_seq >= message.seq):
                return Outcome(True, detail=f"nothing to do ({thread.status})")
            person_replied = await _a_person_replied(session, conversation_id)
            if not person_replied:
                return await self._read_turn(session, conv, message, thread)
        async with self.db.write() as session:
            await stop_assistant(session, conversation_id, "agent_replied")
        return Outcome(True, detail="a person replied; the assistant stopped")

    async def _read_turn(
        self, session: AsyncSession, conv: Conversation, message: Message, thread: AssistantThread | None
    ) -> _Turn | Outcome:
        widget = await session.get(Widget, conv.widget_id)
        assert widget is not None
        config = await get_config(session, widget.id)
        if await _recent_bot_replies(session, conv.id, self.clock()) >= config.replies_per_minute:
            return Outcome(True, detail="per-conversation reply rate reached")
        history = await _history(session, conv.id, message.seq)
        state = ThreadState(thread.status, thread.reason, thread.unanswered, thread.lead) if thread else ThreadState()
        return _Turn(conv, message, widget, config, state, history)

    async def _answer(self, turn: _Turn) -> Outcome:
        """Retrieve, decide, maybe generate, store: the work the visitor sees ``typing`` for."""
        conv, message, widget, config = turn.conv, turn.message, turn.widget, turn.config
        async with self.db.read() as session:
            index = await self.indexes.index_now(session, widget.id)  # keywords while embeddings build
            spent = await tokens_used(session, widget.id)
        status = await self.watcher.status_of(widget)
        earlier = next((m.text for m in reversed(turn.history) if m.sender == "visitor"), None)
        situation = Situation(
            text=message.text,
            humans_available=status.online,
            offline_form=widget.offline_form,
            visitor_name=conv.visitor_name,
            visitor_email=conv.visitor_email,
            earlier_question=earlier,
            language=conv.language,
        )
        provider = self._provider(config, spent)
        hits = index.search(message.text)
        reply, new_state = decide(situation, turn.state, hits, config, use_model=provider is not None)
        tokens, used = 0, "retrieval"
        if reply.kind == "generate" and provider is not None:
            turns = transcript_turns(turn.history, message)
            reply, new_state, tokens, used = await self._generate(
                provider, config, widget, turns, reply, turn.state, situation
            )
        stored = await self._store(widget, conv, message, config, reply, new_state, tokens)
        result = {"kind": reply.kind, "provider": used, "message_id": stored, "tokens": tokens}
        return Outcome(True, result={**result, "index": index_kind(index)})

    # ------------------------------------------------------------------ warming up
    async def warm_up(self, stop: asyncio.Event | None = None) -> None:
        """Build the index of every widget the assistant may answer for, in the background of a start.

        So the first question after a start is answered with embeddings, not
        the keyword stand-in. Widgets one after another (a build keeps a core
        busy); stops early when ``stop`` is set. A failure is logged, never
        raised: questions then start the builds, as without a warm-up.
        """
        started = time.monotonic()
        try:
            async with self.db.read() as session:
                widget_ids = await _assistant_widget_ids(session)
            for widget_id in widget_ids:
                async with self.db.read() as session:
                    build = await self.indexes.build(session, widget_id)
                if not await _unless_stopped(build, stop):
                    return
        except Exception:  # noqa: BLE001 - warming up is an optimisation, never a reason to stop
            log.exception("building knowledge-base indexes at start failed; they are built on first question")
            return
        if widget_ids:
            log.info(
                "knowledge-base indexes of %d widget(s) built in %.1f s", len(widget_ids), time.monotonic() - started
            )

    def _provider(self, config: AssistantConfig, spent: int) -> LLMProvider | None:
        provider = self.providers.pick(config.provider)
        if provider is not None and spent >= config.daily_token_budget:
            log.info("daily token budget of %s reached; answering retrieval-only", config.daily_token_budget)
            return None
        return provider

    async def _generate(
        self,
        provider: LLMProvider,
        config: AssistantConfig,
        widget: Widget,
        turns: tuple[ChatTurn, ...],
        reply: Reply,
        state: ThreadState,
        situation: Situation,
    ) -> tuple[Reply, ThreadState, int, str]:
        """Let the model phrase the answer from the passages; fall back to retrieval-only on any failure."""
        request = LLMRequest(
            system=system_prompt(config, widget.name, reply.passages),
            turns=turns,
            max_tokens=config.max_reply_tokens,
            model=config.model,
            passages=reply.passages,
        )
        try:
            out = await asyncio.wait_for(provider.complete(request), timeout=self.timeout_s)
        except (LLMError, asyncio.TimeoutError) as exc:
            kind = exc.kind if isinstance(exc, LLMError) else "timeout"
            log.warning("%s failed (%s: %s); answering from the knowledge base", provider.name, kind, exc)
            threshold = config.min_confidence if config.min_confidence is not None else DEFAULT_MIN_CONFIDENCE
            best = confident_hit(reply.hits, threshold)
            if best is not None:
                fallback = Reply("answer", retrieval_answer(best), passages=(best.passage,), hits=reply.hits)
                return fallback, answered(state), 0, f"retrieval (after {provider.name} {kind})"
            escalated, new_state = escalate(state, situation, config, "provider_error", reply.hits)
            return escalated, new_state, 0, "none"
        if out.abstained:
            no, new_state = not_answered(state, situation, config, reply.hits)
            return no, new_state, out.tokens, provider.name
        text = out.text.strip() + ("…" if out.truncated else "")
        return replace(reply, kind="answer", text=text), answered(state), out.tokens, provider.name

    async def _store(
        self,
        widget: Widget,
        conv: Conversation,
        message: Message,
        config: AssistantConfig,
        reply: Reply,
        new_state: ThreadState,
        tokens: int,
    ) -> int | None:
        """The bot message, the new state, the usage and any lead: one transaction, then events."""
        leads: list[dict[str, Any]] = []

        async def bookkeeping(session: AsyncSession, current: Conversation) -> bool:
            # Lock the conversation first: an agent's reply being stored right now
            # holds it, so we see that reply (and stay quiet) instead of racing it.
            await session.get(Conversation, current.id, with_for_update=True, populate_existing=True)
            if await _a_person_replied(session, current.id):
                await stop_assistant(session, current.id, "agent_replied")
                return False
            state_now, answered_before = await load_thread(session, current.id, lock=True)
            if state_now.status != ACTIVE:
                return False  # a person took over while we were thinking: stay quiet
            await save_thread(session, current.id, new_state, answered_seq=message.seq)
            if new_state.status != ACTIVE or (answered_before == 0 and message.seq > 1):
                # The thread's root offers "Take over" while the assistant answers: it handed the
                # chat over (the button goes), or it started in a chat people had (the button comes).
                await plan_root_update(session, current)
            if tokens:
                await add_usage(session, widget.id, tokens)
            if reply.lead and reply.lead.get("email"):
                row_widget = await session.get(Widget, widget.id)
                assert row_widget is not None
                _row, lead, _planned = await capture_lead(
                    session, row_widget, current, name=reply.lead.get("name"), email=str(reply.lead["email"]),
                    need=reply.lead.get("need"),
                )
                leads.append(lead)
            return True

        actions = _actions(reply, config, conv.language)
        stored = await self.chat.bot_message(conv.id, reply.text, author=config.name, actions=actions, within=bookkeeping)
        for lead in leads:
            await self.bus.publish(LEAD_CREATED, {"widget_id": widget.id, "conversation_id": conv.id, "lead": lead})
            await self.bus.publish(
                ev.OFFLINE_MESSAGE_CREATED, {"widget_id": widget.id, "offline_message_id": lead["offline_message_id"]}
            )
        return stored.id if stored is not None else None

    # ------------------------------------------------------------------ trying a question
    async def ask(
        self, widget: Widget, question: str, *, language: str | None = None, wait_for_index: bool = True
    ) -> dict[str, Any]:
        """What the assistant would answer to ``question`` as a first message (from a visitor whose
        browser speaks ``language``); nothing is stored except the model's token usage (it is spent).

        ``wait_for_index=False`` answers as a visitor would be answered this
        instant: by keywords while the embedding index is still being built
        (the answer's ``index`` says which answered). The API's "try a
        question" does that, so it never hangs on a build; ``deskbell kb
        ask``, a process of its own that has no index yet, waits for the full one.
        """
        async with self.db.read() as session:
            config = await get_config(session, widget.id)
            if wait_for_index:
                index = await self.indexes.index_for(session, widget.id)
            else:
                index = await self.indexes.index_now(session, widget.id)
            spent = await tokens_used(session, widget.id)
        status = await self.watcher.status_of(widget)
        situation = Situation(
            text=question, humans_available=status.online, offline_form=widget.offline_form, language=language
        )
        provider = self._provider(config, spent)
        hits = index.search(question)
        reply, state = decide(situation, ThreadState(), hits, config, use_model=provider is not None)
        tokens, used = 0, "retrieval"
        if reply.kind == "generate" and provider is not None:
            turns = (ChatTurn("user", question),)
            reply, state, tokens, used = await self._generate(provider, config, widget, turns, reply, state, situation)
            if tokens:
                async with self.db.write() as session:
                    await add_usage(session, widget.id, tokens)
        return {
            "question": question,
            "kind": reply.kind,
            "answer": reply.text,
            "provider": used,
            "reason": reply.reason,
            "confidence": round(hits[0].confidence, 3) if hits else 0.0,
            "matches": [match_to_json(h) for h in hits],
            "actions": _actions(reply, config, language),
            "tokens": tokens,
            "index": index_kind(index),
        }


def _actions(reply: Reply, config: AssistantConfig, language: str | None = None) -> list[dict[str, Any]]:
    """Extra UI the widget can show under the bot's message (see the report in docs)."""
    actions: list[dict[str, Any]] = []
    if reply.offer_form is not None:
        actions.append({"type": "offline_form", "prefill": reply.offer_form})
    if reply.kind == "booking" and config.booking_link:
        label = texts_for(language)["booking_label"]
        actions.append({"type": "link", "label": label, "url": config.booking_link})
    if reply.hands_off:
        actions.append({"type": "handoff"})
    return actions


async def _a_person_replied(session: AsyncSession, conversation_id: int) -> bool:
    """An agent's line reached the visitor; internal notes do not count."""
    query = (
        select(Message.id)
        .where(Message.conversation_id == conversation_id, Message.sender == "agent", Message.internal.is_(False))
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none() is not None


async def _assistant_widget_ids(session: AsyncSession) -> list[int]:
    """Widgets with the assistant enabled and something in their knowledge base."""
    has_entries = exists().where(KnowledgeEntry.widget_id == Widget.id)
    query = select(Widget.id).where(Widget.ai_enabled.is_(True), has_entries).order_by(Widget.id)
    return list((await session.execute(query)).scalars())


async def _unless_stopped(work: asyncio.Future[Any], stop: asyncio.Event | None) -> bool:
    """Wait for ``work`` unless ``stop`` is set first (then leave it running); whether it finished."""
    if stop is None:
        await asyncio.shield(work)  # being cancelled leaves the build be
        return True
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if work.done():
        work.result()  # its failure, if any, is the caller's
        return True
    return False


async def _recent_bot_replies(session: AsyncSession, conversation_id: int, now: datetime) -> int:
    query = select(func.count(Message.id)).where(
        Message.conversation_id == conversation_id,
        Message.sender == "bot",
        Message.created_at >= now - timedelta(minutes=1),
    )
    return int((await session.execute(query)).scalar_one())


async def _history(session: AsyncSession, conversation_id: int, before_seq: int) -> list[Message]:
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.seq < before_seq, Message.internal.is_(False))
        .order_by(Message.seq.desc())
        .limit(TRANSCRIPT_MESSAGES)
    )
    return list(reversed(list((await session.execute(query)).scalars())))
