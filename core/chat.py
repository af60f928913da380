"""The chat service: every inbound event goes through here.

Each method is one database transaction followed by events on the bus, the
single path of DESIGN.md ("inbound event -> core service -> one transaction
-> publish -> deliveries"). Adapters (widget, console, Slack, Teams) call
these methods and never write to each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import events as ev
from core.agents import get_agent, mark_seen, set_duty, update_agent
from core.assistant_state import stop_assistant
from core.conversations import (
    Posted,
    VisitorContext,
    clean_client_id,
    clean_text,
    claim_conversation,
    close_conversation,
    conversation_to_json,
    edit_agent_message,
    get_conversation,
    message_delete_frame,
    message_frame,
    message_update_frame,
    message_to_json,
    post_agent_message,
    post_system_message,
    post_visitor_message,
    withdraw_agent_message,
)
from core.db import Database
from core.dedupe import first_time
from core.destinations import Destinations, destinations_of
from core.deliveries import (
    conversation_start_owes_nothing,
    plan_agent_reply,
    plan_conversation_closed,
    plan_conversation_started,
    start_owes_nothing,
)
from core.events import EventBus
from core.group_commit import Bulk
from core.line_batches import Relay, VisitorLine, post_visitor_lines, store_in_chats
from core.metrics import Registry
from core.fanout import ai_reply_rows, message_relay_rows, plan_message_relay, plan_root_update, relay_kind
from core.errors import NotFound
from core.models import Agent, Conversation, Message, MessageLink, Widget
from core.outbox import insert_rows


log = logging.getLogger(__name__)


def _message_event(conv: Conversation, message: Message) -> dict[str, Any]:
    return {
        "conversation_id": conv.id,
        "widget_id": conv.widget_id,
        "visitor_id": conv.visitor_id,
        "seq": message.seq,
        "internal": message.internal,
        "frame": message_frame(message),
        "message": message_to_json(message),
    }


async def _plan_visitor_line(session: AsyncSession, posted: Posted, assistant: bool) -> list[dict[str, Any]]:
    """What a stored visitor line owes: its relay to every bound channel and, if the
    assistant answers, an ``ai.reply``; outbox rows for :func:`insert_rows`."""
    rows = await message_relay_rows(session, posted.conversation, posted.message)
    if assistant:
        rows += await ai_reply_rows(session, posted.conversation, posted.message)
    return rows


def _conversation_event(conv: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": conv.id,
        "widget_id": conv.widget_id,
        "conversation": conversation_to_json(conv),
    }


def _change_event(conv: Conversation, message: Message, frame: dict[str, Any]) -> dict[str, Any]:
    """An edit or deletion of a message, with the frame the visitor's widget applies."""
    return {
        "conversation_id": conv.id,
        "widget_id": conv.widget_id,
        "visitor_id": conv.visitor_id,
        "internal": message.internal and frame["type"] == "message_update",
        "frame": frame,
        "message": message_to_json(message),
    }


async def _get_message(session: Any, message_id: int) -> Message:
    message = await session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    return message


CHATTING_REMEMBERED = 100_000  # visitors (about 100 bytes each)
# Wake-ups of the dispatcher for visitor lines: the first at once, then at most one per this
# long while lines keep coming. Each wake-up is a claim (a round trip and a read of the
# batch); at 300 lines/s unpaced, they were most of what a worker read from Redis and
# made its claims small. A line waits at most this long more to be claimed.
WAKE_EVERY_S = 0.02


class ChatService:
    def __init__(self, db: Database, bus: EventBus, metrics: Registry | None = None) -> None:
        self.db = db
        self.bus = bus
        self._messages = (metrics or Registry()).counter(
            "deskbell_messages_total", "Messages stored, by sender (counted once, where they arrive)."
        )
        self._assistant_answers: Callable[[Widget], Awaitable[bool]] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._wake_again = False
        # Visitors whose chat was open at their last line here: their lines try the
        # one-statement store first. So do the lines of widgets whose new chats that
        # statement can open; another widget's new visitor would waste a round trip there.
        self._chatting: OrderedDict[tuple[int, str], None] = OrderedDict()
        # Delivery planning reads destinations from a cache; the bus keeps it fresh
        # across processes (changes here are published, changes elsewhere drop entries).
        db.destinations.watch(bus)

    def outbox_enqueued(self) -> None:
        """``OUTBOX_ENQUEUED`` for rows already committed, without waiting and without
        one publish (a Redis round trip in every process) per visitor line: lines
        committed while a wake-up is on its way, or within :data:`WAKE_EVERY_S` of it,
        get one more after that."""
        if self._wake is not None and not self._wake.done():
            self._wake_again = True
            return
        self._wake = asyncio.ensure_future(self._publish_wakes())

    async def _publish_wakes(self) -> None:
        while True:
            self._wake_again = False
            try:
                await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
            except Exception:  # the dispatcher still polls; the rows are committed
                log.exception("could not publish %s", ev.OUTBOX_ENQUEUED)
            await asyncio.sleep(WAKE_EVERY_S)
            if not self._wake_again:
                return

    def use_assistant(self, answers: Callable[[Widget], Awaitable[bool]]) -> None:
        """Plan an ``ai.reply`` for visitor messages on widgets where ``answers(widget)`` (status mode "ai")."""
        self._assistant_answers = answers

    async def visitor_message(
        self,
        widget: Widget,
        visitor_id: str,
        text: Any,
        *,
        client_id: str | None,
        context: VisitorContext = VisitorContext(),
        stored: Callable[[Conversation, Message], Awaitable[None]] | None = None,
    ) -> tuple[Conversation, Message, bool]:
        """Store, commit, then announce. Returns (conversation, message, duplicate).

        The write joins a group commit (``Database.write_batched``): lines
        arriving together share one transaction, and this returns only after
        the COMMIT holding this line, so the caller's ack still means stored.
        Lines of one visitor on one widget keep their order (same ``key``).
        ``stored`` is awaited right after that COMMIT, before the events go
        out: the widget's ack need not wait for the event bus (a Redis round
        trip per event when several processes run).
        """
        cleaned = clean_text(text)  # checked before queueing: a bad line never joins a batch
        client_id = clean_client_id(client_id)
        assistant = self._assistant_answers is not None and await self._assistant_answers(widget)

        async def write(session: AsyncSession) -> tuple[Posted, int, dict[str, Any] | None, dict[str, Any] | None]:
            with session.no_autoflush:  # ORM rows (a chat's start) go in one INSERT at COMMIT
                posted = await post_visitor_message(
                    session, widget, visitor_id, cleaned, client_id=client_id, context=context
                )
                if posted.duplicate:
                    return posted, 0, None, None
                rows = await _plan_visitor_line(session, posted, assistant)
                await insert_rows(session, rows)
                planned = len(rows)
                if posted.started:
                    planned += await plan_conversation_started(session, widget, posted.conversation, posted.message)
            # Events are built now: a later line of the same chat in the same batch
            # refreshes the shared Conversation object (its last_seq).
            started = _conversation_event(posted.conversation) if posted.started else None
            return posted, planned, started, _message_event(posted.conversation, posted.message)

        line = VisitorLine(widget.id, visitor_id, cleaned, client_id, context)
        # On PostgreSQL the bulk form stores even a single line in one statement (a round
        # trip) where post_visitor_message takes two; on SQLite both take two. And on
        # PostgreSQL a line that owes only its relays goes first, with them, in one
        # statement outside any transaction (see _store_first and store_in_chats).
        postgres = not self.db.is_sqlite
        bulk = Bulk(self._write_lines, (line, widget, assistant), alone=postgres, first=self._store_first if postgres else None)
        posted, planned, started, created = await self.db.write_batched(write, key=(widget.id, visitor_id), bulk=bulk)
        if postgres:
            self._note_chatting((widget.id, visitor_id), posted.conversation.status == "open")
        if planned:
            self.outbox_enqueued()
        if stored is not None:
            await stored(posted.conversation, posted.message)
        if posted.duplicate or created is None:
            return posted.conversation, posted.message, True
        self._messages.inc(sender="visitor")
        if started is not None:
            await self.bus.publish(ev.CONVERSATION_UPDATED, started)
        await self.bus.publish(ev.MESSAGE_CREATED, created)
        return posted.conversation, posted.message, False

    async def _store_first(
        self, lines: list[tuple[VisitorLine, Widget, bool]]
    ) -> list[tuple[Posted, int, dict[str, Any] | None, dict[str, Any]] | None]:
        """Lines that owe only their relays (no assistant answers them), with their outbox
        rows, in one self-committing statement; None for the others. A line goes there if
        its visitor was chatting at their last line here, or if a chat its widget opens
        owes nothing but relays (no ``conversation.started`` webhook, no push): then the
        statement opens the chat of a visitor who has none."""
        candidates = [n for n, (_line, _widget, assistant) in enumerate(lines) if not assistant]
        out: list[tuple[Posted, int, dict[str, Any] | None, dict[str, Any]] | None] = [None] * len(lines)
        if not candidates:
            return out
        relays: list[Relay] = []
        may_open: set[int] = set()
        known = await self._destinations({lines[n][0].widget_id for n in candidates})
        for widget_id, (destinations, owes_nothing) in known.items():
            relays += [Relay(widget_id, b.id, relay_kind(b.platform)) for b in destinations.bindings]
            if owes_nothing:
                may_open.add(widget_id)
        plain = [n for n in candidates if lines[n][0].pair in self._chatting or lines[n][0].widget_id in may_open]
        if not plain:
            return out
        stored = await store_in_chats(self.db, [lines[n][0] for n in plain], relays, may_open)
        for n, answer in zip(plain, stored):
            if answer is not None:
                posted, relayed = answer
                started = _conversation_event(posted.conversation) if posted.started else None
                out[n] = (posted, relayed, started, _message_event(posted.conversation, posted.message))
        return out

    async def _destinations(self, widget_ids: set[int]) -> dict[int, tuple[Destinations, bool]]:
        """Each widget's destinations and whether a chat it opens owes nothing but relays:
        from the cache, with a session opened only if something there is not fresh."""
        cache = self.db.destinations
        push_keys = cache.peek_push_keys()
        found: dict[int, tuple[Destinations, bool]] = {}
        for widget_id in widget_ids:
            destinations = cache.peek(widget_id)
            if destinations is None or push_keys is None:
                break
            found[widget_id] = (destinations, start_owes_nothing(destinations, push_keys))
        else:
            return found
        async with self.db.read() as session:
            for widget_id in widget_ids:
                destinations = await destinations_of(session, widget_id)
                found[widget_id] = (destinations, await conversation_start_owes_nothing(session, destinations))
        return found

    def _note_chatting(self, pair: tuple[int, str], chatting: bool) -> None:
        if not chatting:
            self._chatting.pop(pair, None)
            return
        self._chatting[pair] = None
        self._chatting.move_to_end(pair)
        if len(self._chatting) > CHATTING_REMEMBERED:
            self._chatting.popitem(last=False)

    async def _write_lines(
        self, session: AsyncSession, lines: list[tuple[VisitorLine, Widget, bool]]
    ) -> list[tuple[Posted, int, dict[str, Any] | None, dict[str, Any]]]:
        """The bulk form of ``visitor_message``'s write: the lines in two or three statements
        (opening the chats of first lines), then each one's deliveries planned."""
        posted = await post_visitor_lines(session, [line for line, _, _ in lines])  # LinesNotBulk: one by one
        out: list[tuple[Posted, int, dict[str, Any] | None, dict[str, Any]]] = []
        rows: list[dict[str, Any]] = []  # every line's deliveries, in one INSERT
        with session.no_autoflush:  # ORM rows (webhooks of chats started) go in one INSERT at COMMIT
            for (_, widget, assistant), p in zip(lines, posted):
                planned = await _plan_visitor_line(session, p, assistant)
                rows += planned
                count = len(planned)
                started = None
                if p.started:
                    count += await plan_conversation_started(session, widget, p.conversation, p.message)
                    started = _conversation_event(p.conversation)
                out.append((p, count, started, _message_event(p.conversation, p.message)))
            await insert_rows(session, rows)
        return out

    async def agent_message(
        self,
        conversation_id: int,
        text: Any,
        *,
        agent_id: int | None = None,
        author: str | None = None,
        avatar_url: str | None = None,
        source_binding_id: int | None = None,
        event_id: tuple[str, str] | None = None,
        source_ref: str | None = None,
    ) -> Message | None:
        """An agent's line from any platform; ``!close`` closes, notes stay internal.

        ``source_binding_id`` is the channel it was written in (not relayed
        back there); ``event_id`` (source, id) makes a redelivered platform
        event a no-op; ``source_ref`` (the platform's id of the line, e.g. a
        Slack ts) is linked to the stored message so later edits and
        deletions there can find it.
        """
        seen_changed = False
        async with self.db.write() as session:
            if event_id is not None and not await first_time(session, *event_id):
                return None
            conv = await get_conversation(session, conversation_id)
            agent: Agent | None = await get_agent(session, agent_id) if agent_id else None
            if agent is not None:
                seen_changed = mark_seen(agent)
            message, closed = await post_agent_message(
                session, conv, text, agent=agent, author=author, avatar_url=avatar_url
            )
            if message is not None:
                await plan_message_relay(session, conv, message, exclude_binding_id=source_binding_id)
                plan_agent_reply(session, conv, message)
                if not message.internal:  # a person answered the visitor: the bot stops (a note is not an answer)
                    await stop_assistant(session, conv.id, "agent_replied")
                if source_binding_id is not None and source_ref is not None:
                    session.add(MessageLink(message_id=message.id, binding_id=source_binding_id, platform_ref=source_ref))
            if closed:
                await plan_root_update(session, conv)
                await plan_conversation_closed(session, conv)
        await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
        if seen_changed:
            await self.bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent_id})
        if closed:
            await self.bus.publish(ev.CONVERSATION_UPDATED, _conversation_event(conv))
        if message is not None:
            self._messages.inc(sender="agent")
            await self.bus.publish(ev.MESSAGE_CREATED, _message_event(conv, message))
        return message

    async def edit_message(
        self, message_id: int, text: Any, *, event_id: tuple[str, str] | None = None
    ) -> Message | None:
        """An agent edited a relayed line where they wrote it: the visitor sees the new text.

        Returns the message when its text changed, None for a redelivered
        event or an edit that changed nothing.
        """
        async with self.db.write() as session:
            if event_id is not None and not await first_time(session, *event_id):
                return None
            message = await _get_message(session, message_id)
            conv = await get_conversation(session, message.conversation_id)
            if not await edit_agent_message(session, message, text):
                return None
        await self.bus.publish(ev.MESSAGE_UPDATED, _change_event(conv, message, message_update_frame(message)))
        return message

    async def delete_message(self, message_id: int, *, event_id: tuple[str, str] | None = None) -> Message | None:
        """An agent deleted a relayed line: it disappears from the visitor's widget.

        Returns the message when it was withdrawn, None when there was
        nothing to do (a redelivery, a note the visitor never saw).
        """
        async with self.db.write() as session:
            if event_id is not None and not await first_time(session, *event_id):
                return None
            message = await _get_message(session, message_id)
            conv = await get_conversation(session, message.conversation_id)
            if not await withdraw_agent_message(session, message):
                return None
        await self.bus.publish(ev.MESSAGE_DELETED, _change_event(conv, message, message_delete_frame(message)))
        return message

    async def claim(self, conversation_id: int, agent_id: int) -> Conversation:
        async with self.db.write() as session:
            conv = await get_conversation(session, conversation_id)
            agent = await get_agent(session, agent_id)
            mark_seen(agent)
            await claim_conversation(session, conv, agent)
            await stop_assistant(session, conv.id, "claimed")
            await plan_root_update(session, conv)
        await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
        await self.bus.publish(ev.CONVERSATION_UPDATED, _conversation_event(conv))
        return conv

    async def close(self, conversation_id: int, agent_id: int | None = None) -> Conversation:
        async with self.db.write() as session:
            conv = await get_conversation(session, conversation_id)
            if agent_id:
                mark_seen(await get_agent(session, agent_id))
            closed = await close_conversation(session, conv)
            if closed:
                await plan_root_update(session, conv)
                await plan_conversation_closed(session, conv)
        if closed:
            await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
            await self.bus.publish(ev.CONVERSATION_UPDATED, _conversation_event(conv))
        return conv

    async def take_over(self, conversation_id: int) -> bool:
        """A person takes the conversation from the assistant (the thread's "Take over" button).

        True when the assistant was speaking in it until now. The root is
        rebuilt in every bound channel (the button goes everywhere, not only
        where it was pressed), also after a late click that changed nothing,
        so a root still showing the button catches up.
        """
        async with self.db.write() as session:
            conv = await get_conversation(session, conversation_id)
            stopped = await stop_assistant(session, conv.id, "taken_over")
            planned = await plan_root_update(session, conv) if conv.status == "open" else 0
        if planned:
            await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
        return stopped

    async def bot_message(
        self,
        conversation_id: int,
        text: str,
        *,
        author: str | None = None,
        actions: list[dict[str, Any]] | None = None,
        within: Callable[[AsyncSession, Conversation], Awaitable[bool]] | None = None,
    ) -> Message | None:
        """The assistant's line: stored, relayed to the thread and pushed like any other message.

        ``within`` runs first in the same transaction (the assistant's own
        bookkeeping) and may return False to store nothing, e.g. because a
        person took over meanwhile. ``actions`` ride along on the live frame
        only (a form offer, a booking link); a replay shows the text.
        """
        async with self.db.write() as session:
            conv = await get_conversation(session, conversation_id)
            if conv.status != "open" or (within is not None and not await within(session, conv)):
                return None
            message = await post_system_message(session, conv, text.strip()[:4000], sender="bot")
            message.author = author
            await session.flush()
            await plan_message_relay(session, conv, message)
        self._messages.inc(sender="bot")
        await self.bus.publish(ev.OUTBOX_ENQUEUED, {})
        event = _message_event(conv, message)
        if actions:
            event["frame"] = {**event["frame"], "actions": actions}
        await self.bus.publish(ev.MESSAGE_CREATED, event)
        return message

    async def typing(self, conversation: Conversation, sender: str, author: str | None, active: bool) -> None:
        await self.bus.publish(
            ev.TYPING,
            {
                "conversation_id": conversation.id,
                "widget_id": conversation.widget_id,
                "from": sender,
                "author": author,
                "active": bool(active),
            },
        )

    async def set_duty(self, agent_id: int, on_duty: bool) -> Agent:
        async with self.db.write() as session:
            agent = await set_duty(session, await get_agent(session, agent_id), on_duty)
        await self.bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent_id})
        return agent

    async def update_agent(self, agent_id: int, data: dict[str, Any]) -> Agent:
        async with self.db.write() as session:
            agent = await update_agent(session, await get_agent(session, agent_id), data)
        await self.bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent_id})
        return agent

    async def agent_seen(self, agent_id: int) -> None:
        """A heartbeat or action: keeps the agent's session alive."""
        async with self.db.write() as session:
            changed = mark_seen(await get_agent(session, agent_id))
        if changed:
            await self.bus.publish(ev.AGENTS_CHANGED, {"agent_id": agent_id})
