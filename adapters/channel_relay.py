"""What every chat-platform relay shares: one outbox handler per kind, the
binding looked up and guarded, and broken channels marked and cleared.

A platform (Slack, Teams...) subclasses :class:`ChannelRelay`, names itself,
says how its errors map to outcomes, and implements the five deliveries.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.assistant_state import assistant_answering, may_be_answering
from core.bulk_sql import among
from core.bindings import mark_broken, thread_for
from core.db import Database
from core.dispatch import Dispatcher
from core.errors import NotFound
from core.models import Agent, ChannelBinding, Conversation, Message, MessageLink, OutboxItem, ThreadLink, Widget
from core.outbox import NewRows, Outcome

log = logging.getLogger(__name__)

STALE_BINDINGS_READ_TOGETHER = 100  # a query of this many rows keeps the loop busy ~5 ms

_THREAD_LINKS: Table = ThreadLink.__table__  # type: ignore[assignment]
_MESSAGE_LINKS: Table = MessageLink.__table__  # type: ignore[assignment]

Work = Callable[[dict[str, Any], ChannelBinding], Awaitable[Outcome]]
KINDS = ("relay", "root_update", "offline_post", "digest", "agents_away")


class Failure(Protocol):
    outcome: Outcome
    broken: str | None  # set when the binding must be marked broken: what to do about it


class ChannelRelay(ABC):
    platform = ""  # "slack", "teams": the outbox kinds are "{platform}.{kind}"
    label = ""  # how people name it in logs: "Slack"

    def __init__(self, db: Database, public_url: str = "") -> None:
        self.db = db
        self.public_url = public_url  # for links in digests
        # Lines of claimed relays, read together at the claim (:meth:`prefetch_replies`),
        # by (message id, binding id); each is taken, or dropped, when its delivery runs.
        # A line whose chat has a thread on the binding is a reply; the first line of a
        # chat comes with the full context its thread's root needs.
        self._replies: dict[tuple[int, int], ThreadReply] = {}
        self._contexts: dict[tuple[int, int], RelayContext] = {}

    def handlers(self) -> dict[str, Callable[[OutboxItem], Awaitable[Outcome]]]:
        return {f"{self.platform}.{kind}": self._handler(getattr(self, f"_{kind}")) for kind in KINDS}

    def register_outbox(self, dispatcher: Dispatcher) -> None:
        """Deliver this platform's outbox kinds with ``dispatcher``; relays claimed together
        have their lines read together (:meth:`prefetch_replies`)."""
        relay = f"{self.platform}.relay"
        for kind, handler in self.handlers().items():
            dispatcher.register(kind, handler, prefetch=self.prefetch_replies if kind == relay else None)

    async def prefetch_replies(self, items: list[OutboxItem]) -> None:
        """What a claimed batch of relays needs, in one session and at most three queries:
        the lines whose chats have their thread already; the full context of the others
        (a chat's first line: its root shows the chat); the bindings not kept yet.
        Otherwise each delivery reads its own: a session per line was the worker's largest
        database cost at 300 lines/s, and when every visitor opened a chat at once, reading
        each line's context and each new binding alone took half the relay's time."""
        wanted = {_reply_key(item.payload) for item in items}
        unknown = sorted({b for _, b in wanted if self.db.destinations.binding(b) is None})
        generation = self.db.destinations.generation
        async with self.db.read() as session:
            dialect = session.get_bind().dialect.name
            rows = await session.execute(
                _thread_replies(dialect),
                {"message_ids": sorted({m for m, _ in wanted}), "binding_ids": sorted({b for _, b in wanted})},
            )
            for binding_id, *fields in rows:
                key = (fields[0], binding_id)
                if key in wanted:
                    self._replies[key] = ThreadReply(*fields)
            first_lines = {key for key in wanted if key not in self._replies}
            if first_lines:
                found = await session.execute(_contexts(dialect), {"message_ids": sorted({m for m, _ in first_lines})})
                contexts = {message.id: (conv, message, widget, claimed_by) for conv, message, widget, claimed_by in found}
                for message_id, binding_id in first_lines:
                    if message_id in contexts:  # no thread on the binding: the batch's first query says so
                        conv, message, widget, claimed_by = contexts[message_id]
                        self._contexts[(message_id, binding_id)] = RelayContext(conv, message, widget, None, claimed_by)
            if unknown:
                await self._read_bindings(session, unknown, generation)

    async def relay_line(
        self, payload: dict[str, Any], binding_id: int
    ) -> tuple[ThreadReply, None, bool] | tuple[None, RelayContext, bool]:
        """What relaying a line needs: ``(reply, None, False)`` when the claim's batch read
        found its chat's thread on the binding (the common case), else ``(None, context,
        assistant)``: the full context, and whether the assistant answers the chat (its
        thread's root then offers "Take over"). A chat whose thread the batch read did not
        find has none yet: its context was read with the batch too. The full context is
        read here only for a line whose batch read failed or missed it (then it holds the
        thread, if there is one)."""
        key = _reply_key(payload)
        reply = self._replies.pop(key, None) if self._replies else None
        if reply is not None:
            return reply, None, False
        ctx = self._contexts.pop(key, None) if self._contexts else None
        if ctx is not None and int(payload["conversation_id"]) == ctx.conv.id:  # read with the claim: no thread yet
            if not may_be_answering(ctx.conv, ctx.widget):
                return None, ctx, False
            async with self.db.read() as session:
                return None, ctx, await assistant_answering(session, ctx.conv, ctx.widget)
        async with self.db.read() as session:
            ctx = await relay_context(session, payload, binding_id)
            assistant = ctx.thread is None and await assistant_answering(session, ctx.conv, ctx.widget)
        return None, ctx, assistant

    def _handler(self, work: Work) -> Callable[[OutboxItem], Awaitable[Outcome]]:
        async def handle(item: OutboxItem) -> Outcome:
            return await self._guarded(item, work)

        return handle

    # -- what a platform provides -------------------------------------------
    def classify(self, exc: BaseException, item: OutboxItem) -> Failure:
        """Map the platform's error to an outcome; re-raise what is not the platform's."""
        raise exc

    def precheck(self, binding: ChannelBinding) -> Outcome | None:
        """A reason the binding cannot be used at all, as a failed outcome; None when it can."""
        return None

    @abstractmethod
    async def _relay(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome: ...

    @abstractmethod
    async def _root_update(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome: ...

    @abstractmethod
    async def _offline_post(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome: ...

    @abstractmethod
    async def _digest(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome: ...

    @abstractmethod
    async def _agents_away(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome: ...

    # -- shared -------------------------------------------------------------
    async def _guarded(self, item: OutboxItem, work: Work) -> Outcome:
        """Run one delivery; turn the platform's refusals into outcomes and broken bindings."""
        try:
            return await self._guarded_work(item, work)
        finally:
            if item.kind.endswith(".relay") and (self._replies or self._contexts):
                key = _reply_key(item.payload)  # not taken: the binding went away...
                self._replies.pop(key, None)
                self._contexts.pop(key, None)

    async def _guarded_work(self, item: OutboxItem, work: Work) -> Outcome:
        try:
            binding = await self._binding(int(item.payload["binding_id"]))
        except NotFound:
            return Outcome(False, detail="the channel binding was removed", permanent=True)
        refused = self.precheck(binding)
        if refused is not None:
            return refused
        try:
            outcome = await work(item.payload, binding)
        except NotFound as exc:
            return Outcome(False, detail=str(exc), permanent=True)
        except Exception as exc:
            failure = self.classify(exc, item)
            if failure.broken:
                await self._set_broken(binding.id, failure.broken)
            return failure.outcome
        if binding.status != "ok":
            await self._set_ok(binding.id)
        return outcome

    async def _binding(self, binding_id: int) -> ChannelBinding:
        """The binding a delivery goes to: kept between deliveries (core/destinations.py says
        how a change drops it), so a line costs no extra session for it.

        Kept rows go stale together (they were read around the same time), so a
        miss reads the other stale ones in the same query: with 600 channels a
        worker otherwise spent a session per delivery re-reading them one by one.
        """
        cache = self.db.destinations
        binding = cache.binding(binding_id)
        if binding is not None:
            return binding
        generation = cache.generation
        wanted = [binding_id, *(i for i in cache.stale_bindings(STALE_BINDINGS_READ_TOGETHER) if i != binding_id)]
        async with self.db.read() as session:
            found = await self._read_bindings(session, wanted, generation)
        if binding_id not in found:
            raise NotFound(f"no channel binding with id {binding_id}")
        return found[binding_id]

    async def _read_bindings(self, session: AsyncSession, ids: list[int], generation: int) -> dict[int, ChannelBinding]:
        """Read bindings ``ids`` in one query and keep them (the cache's ``generation`` when
        the read began); ids no longer bound are forgotten."""
        cache = self.db.destinations
        query = _bindings(session.get_bind().dialect.name)
        found = {b.id: b for b in (await session.execute(query, {"ids": ids})).scalars()}
        for binding_id in ids:
            if binding_id in found:
                cache.keep_binding(found[binding_id], generation)
            else:
                cache.forget_binding(binding_id)
        return found

    async def _set_broken(self, binding_id: int, detail: str) -> None:
        async with self.db.write() as session:
            binding = await session.get(ChannelBinding, binding_id)
            if binding is not None:
                mark_broken(binding, detail)
                log.error(
                    "%s channel %s (binding %s, widget %s) is broken: %s",
                    self.label, binding.channel_name or binding.channel_id, binding.id, binding.widget_id, detail,
                )

    async def _set_ok(self, binding_id: int) -> None:
        """Posting works again (the bot or app is back): clear the broken mark."""
        async with self.db.write() as session:
            binding = await session.get(ChannelBinding, binding_id)
            if binding is not None and binding.status != "ok":
                binding.status, binding.status_detail = "ok", None
                log.info("%s channel %s (binding %s) works again", self.label, binding.channel_id, binding.id)


async def get_row(session: Any, model: type, ident: Any) -> Any:
    """A row the delivery needs; gone means the delivery can never succeed."""
    row = await session.get(model, int(ident))
    if row is None:
        raise NotFound(f"{model.__tablename__} {ident} no longer exists")
    return row


async def agent_name(session: Any, agent_id: int | None) -> str | None:
    if agent_id is None:
        return None
    agent = await session.get(Agent, agent_id)
    return agent.name if agent else None


@dataclass(frozen=True)
class ThreadReply:
    """A line whose chat has its thread on the binding already: all posting it needs.

    Most relays are these (every line after a chat's first). Its fields are
    named as :class:`Message`'s, so the platforms' line formatters take it as
    they take a message.
    """

    id: int
    sender: str
    author: str | None
    text: str
    internal: bool
    thread_ref: str


@lru_cache(maxsize=None)
def _thread_replies(dialect: str) -> Any:
    """Every thread of the lines' chats on the bindings asked for (the caller keeps the pairs
    it wants). Built once per dialect: building it per batch cost SQLAlchemy about as much
    as running it."""
    return (
        select(
            ThreadLink.binding_id, Message.id, Message.sender, Message.author, Message.text, Message.internal,
            ThreadLink.thread_ref,
        )
        .join(ThreadLink, ThreadLink.conversation_id == Message.conversation_id)
        .where(among(Message.id, "message_ids", dialect), among(ThreadLink.binding_id, "binding_ids", dialect))
    )


@lru_cache(maxsize=None)
def _bindings(dialect: str) -> Any:
    """The bindings of the ids asked for, built once per dialect like the queries beside it."""
    return select(ChannelBinding).where(among(ChannelBinding.id, "ids", dialect))


@lru_cache(maxsize=None)
def _contexts(dialect: str) -> Any:
    """The full context of lines whose chats have no thread on their binding yet (see
    RelayContext), built once per dialect like the query above."""
    return (
        select(Conversation, Message, Widget, Agent.name)
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Widget, Widget.id == Conversation.widget_id)
        .outerjoin(Agent, Agent.id == Conversation.claimed_by)
        .where(among(Message.id, "message_ids", dialect))
    )


def _reply_key(payload: dict[str, Any]) -> tuple[int, int]:
    return int(payload["message_id"]), int(payload["binding_id"])


@dataclass(frozen=True)
class RelayContext:
    """What relaying one line needs, read in one query."""

    conv: Conversation
    message: Message
    widget: Widget
    thread: ThreadLink | None
    claimed_by: str | None


async def relay_context(session: AsyncSession, payload: dict[str, Any], binding_id: int) -> RelayContext:
    """The conversation, the line, the widget, the thread on this binding and the claiming agent's
    name: one round trip instead of five. Raises NotFound naming what is gone."""
    conv_id, message_id = int(payload["conversation_id"]), int(payload["message_id"])
    query = (
        select(Conversation, Message, Widget, ThreadLink, Agent.name)
        .select_from(Conversation)
        .join(Message, Message.id == message_id)
        .join(Widget, Widget.id == Conversation.widget_id)
        .outerjoin(ThreadLink, and_(ThreadLink.conversation_id == Conversation.id, ThreadLink.binding_id == binding_id))
        .outerjoin(Agent, Agent.id == Conversation.claimed_by)
        .where(Conversation.id == conv_id)
    )
    row = (await session.execute(query)).first()
    if row is None:  # say which one is gone
        conv = await get_row(session, Conversation, conv_id)
        await get_row(session, Message, message_id)
        await get_row(session, Widget, conv.widget_id)
        raise NotFound(f"conversation {conv_id} cannot be relayed")
    conv, message, widget, thread, claimed_by = row
    return RelayContext(conv, message, widget, thread, claimed_by)


@dataclass(frozen=True)
class RootState:
    """What a thread's root shows now, for rebuilding it after a claim, close or take-over."""

    conv: Conversation
    widget: Widget
    root_ref: str  # the root post on this binding (Slack ts, Teams activity id)
    thread_ref: str | None  # the thread it opened; None when only the clicked root is known
    claimed_by: str | None
    first_text: str | None  # the visitor line the root carries, if it carries one
    assistant: bool  # the assistant may answer: offer "Take over"


async def root_state(
    session: AsyncSession, conversation_id: int, binding_id: int, *, clicked_root: str | None = None
) -> RootState | None:
    """The root's current state on one binding; None while the chat has no thread there.

    ``clicked_root`` is the root a button was pressed on: it stands in while
    the thread link is not stored yet (the root was posted, its outcome not
    yet recorded). Raises NotFound when the conversation or widget is gone.
    """
    conv = await get_row(session, Conversation, conversation_id)
    thread = await thread_for(session, conv.id, binding_id)
    root_ref = (thread.root_ref if thread is not None else None) or clicked_root
    if not root_ref:
        return None
    widget = await get_row(session, Widget, conv.widget_id)
    first = (
        await session.execute(
            select(Message.text)
            .join(MessageLink, MessageLink.message_id == Message.id)
            .where(MessageLink.binding_id == binding_id, MessageLink.platform_ref == root_ref)
        )
    ).scalar_one_or_none()
    return RootState(
        conv,
        widget,
        root_ref,
        thread.thread_ref if thread is not None else None,
        await agent_name(session, conv.claimed_by),
        first,
        await assistant_answering(session, conv, widget),
    )


def link_message(message_id: int, binding_id: int, platform_ref: str) -> NewRows:
    """Effect for an outcome: where a relayed line landed, written with the attempt."""
    return NewRows(((_MESSAGE_LINKS, {"message_id": message_id, "binding_id": binding_id, "platform_ref": platform_ref}),))


def link_root(
    conversation_id: int, binding_id: int, *, thread_ref: str, root_ref: str, message_id: int | None
) -> NewRows:
    """Effect for an outcome: the thread a root post opened (and the line it carries), written with
    the attempt. A thread already linked keeps its link, as :func:`core.bindings.link_thread` does."""
    thread = {
        "conversation_id": conversation_id, "binding_id": binding_id, "thread_ref": thread_ref, "root_ref": root_ref,
    }
    rows: tuple[tuple[Table, dict[str, Any]], ...] = ((_THREAD_LINKS, thread),)
    if message_id is not None:
        rows += ((_MESSAGE_LINKS, {"message_id": message_id, "binding_id": binding_id, "platform_ref": root_ref}),)
    return NewRows(rows)
