"""The open visitor sockets of this process and the events routed to them.

Events arrive from the bus (which, with Redis, carries them from any
process). Message frames are delivered strictly in ``seq`` order and never
twice: a socket that sees a gap reads the missing messages from the database,
the truth, before going on.

When that read fails (SQLite "database is locked", a PostgreSQL connection
lost), the socket stays open and is marked *behind*: its ``last_seq`` does
not move, so nothing is skipped, and one background task catches every
socket behind up from the database, retrying with backoff until the
database answers (the next event for the socket tries again too). A socket
is only ever sent what follows its ``last_seq``, under its lock, so nothing
is sent twice either. Closing the socket with 1013 instead would send every
widget into a reconnect whose welcome fails the same way while the database
is down; the socket keeps working for everything that does not need it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select

from adapters.widget.open_conversations import OpenConversations
from core import events as ev
from core.availability import WidgetStatus
from core.conversations import message_frame, messages_after
from core.models import Conversation, Widget
from core.services import Services
from core.wakeups import wait_for_wake
from core.widgets import get_widget_by_key

log = logging.getLogger(__name__)
# Widgets by key are kept this long; WIDGET_CHANGED on the bus drops them at once.
WIDGET_TTL_S = 5.0
# At shutdown, how long to wait for a widget to answer our close frame. It has the
# reconnect frame and the close frame by then; a slow reply only delays the restart.
CLOSE_WAIT_S = 1.0
# Catching sockets up after a failed database read: the first retry after this long,
# doubling while the database keeps failing, up to the maximum.
CATCH_UP_RETRY_S = 1.0
CATCH_UP_RETRY_MAX_S = 10.0
# Messages read per round trip when filling a gap; conversations per catch-up read.
FILL_BATCH = 500
HEADS_BATCH = 500
# While the database keeps failing, a reminder line (no traceback) at most this often.
FAILURE_LOG_INTERVAL_S = 60.0


@dataclass(eq=False)
class VisitorSocket:
    ws: web.WebSocketResponse
    widget_id: int
    visitor_id: str
    ip: str
    conversation_id: int | None = None
    last_seq: int = 0  # every message up to it was sent (or is internal)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed_conversation_id: int | None = None  # the conversation it was last told is closed
    # Typing published last for this socket: (active, monotonic time), to drop repeats.
    typing_sent: tuple[bool, float] | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the socket is going away; its handler cleans up


class WidgetHub:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._by_widget: dict[int, set[VisitorSocket]] = defaultdict(set)
        self._by_visitor: dict[tuple[int, str], set[VisitorSocket]] = defaultdict(set)
        self._per_ip: dict[str, int] = defaultdict(int)
        self._widgets: dict[str, tuple[float, Widget]] = {}  # key -> (fresh until, widget)
        self._widget_loads: dict[str, asyncio.Future[Widget]] = {}  # lookups in flight, shared
        # MESSAGE_CREATED events seen: a joining socket compares it before and after its
        # read to know whether a message may have slipped in between (socket._welcome).
        self.message_events = 0
        # Returning visitors' open conversations, read in batches on one connection of its
        # own (in a reconnect storm, one round trip answers every hello waiting).
        self.open_conversations = OpenConversations(services.db)
        # Sockets that may have missed messages (a failed read, a resync), oldest first,
        # and the task catching them up from the database (see the module docstring).
        self._behind: dict[VisitorSocket, int] = {}  # -> when it was marked (a counter)
        self._marks = 0
        self._catch_up_task: asyncio.Task[None] | None = None
        self._catch_up_now = asyncio.Event()
        self.catch_up_retry_s = CATCH_UP_RETRY_S
        self.catch_up_retry_max_s = CATCH_UP_RETRY_MAX_S
        self._failing_since: float | None = None  # the database read failing since (monotonic)
        self._failures = 0
        self._failure_logged_at = 0.0
        bus = services.bus
        bus.subscribe(ev.MESSAGE_CREATED, self._on_message)
        bus.subscribe(ev.CONVERSATION_UPDATED, self._on_conversation)
        bus.subscribe(ev.TYPING, self._on_typing)
        bus.subscribe(ev.MESSAGE_UPDATED, self._on_message_change)
        bus.subscribe(ev.MESSAGE_DELETED, self._on_message_change)
        bus.subscribe(ev.RESYNC, self._on_resync)
        bus.subscribe(ev.WIDGET_CHANGED, self._on_widget_changed)
        services.watcher.add_listener(self.push_status)

    # -- registry ---------------------------------------------------------
    async def widget(self, key: str) -> Widget:
        """The widget with this public key (NotFound if none), cached for WIDGET_TTL_S.

        Every socket opening needs it: 10,000 widgets reconnecting after a
        restart would otherwise read the same row 10,000 times. A change
        published on the bus (from any process) drops the cache at once; the
        TTL bounds staleness for changes made without the bus.
        """
        hit = self._widgets.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        load = self._widget_loads.get(key)
        if load is None:  # one read for every socket asking at once (a reconnect storm)
            load = asyncio.ensure_future(self._load_widget(key))
            self._widget_loads[key] = load
            load.add_done_callback(lambda _done: self._widget_loads.pop(key, None))
        return await asyncio.shield(load)

    async def _load_widget(self, key: str) -> Widget:
        async with self.services.db.read() as session:
            widget = await get_widget_by_key(session, key)  # unknown keys are not cached
        self._widgets[key] = (time.monotonic() + WIDGET_TTL_S, widget)
        return widget

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def add(self, sock: VisitorSocket) -> None:
        self._by_widget[sock.widget_id].add(sock)
        self._by_visitor[(sock.widget_id, sock.visitor_id)].add(sock)
        self._per_ip[sock.ip] += 1

    def remove(self, sock: VisitorSocket) -> None:
        if sock in self._behind:
            del self._behind[sock]
            if not self._behind:
                self._catch_up_now.set()  # the catch-up task, if waiting, ends now
        self._discard(self._by_widget, sock.widget_id, sock)
        self._discard(self._by_visitor, (sock.widget_id, sock.visitor_id), sock)
        self._per_ip[sock.ip] -= 1
        if self._per_ip[sock.ip] <= 0:
            del self._per_ip[sock.ip]

    @staticmethod
    def _discard(index: dict[Any, set[VisitorSocket]], key: Any, sock: VisitorSocket) -> None:
        group = index.get(key)
        if group is not None:
            group.discard(sock)
            if not group:
                del index[key]

    @property
    def count(self) -> int:
        return sum(len(s) for s in self._by_widget.values())

    def all_sockets(self) -> list[VisitorSocket]:
        return [s for group in self._by_widget.values() for s in group]

    # -- deliveries -------------------------------------------------------
    async def push_status(self, widget_id: int, _key: str, status: WidgetStatus) -> None:
        sockets = self._by_widget.get(widget_id)
        if not sockets:
            return
        text = json.dumps({"type": "status", **status.to_json()}, separators=(",", ":"))
        for sock in list(sockets):
            await sock.send_text(text)

    async def _on_message(self, _name: str, data: dict[str, Any]) -> None:
        self.message_events += 1
        sockets = self._by_visitor.get((data["widget_id"], data.get("visitor_id", "")), set())
        for sock in list(sockets):
            await self.deliver(sock, data["conversation_id"], data["seq"], data["internal"], data["frame"])

    async def deliver(
        self, sock: VisitorSocket, conversation_id: int, seq: int, internal: bool, frame: dict[str, Any]
    ) -> None:
        async with sock.lock:
            if sock.conversation_id is None:
                if conversation_id == sock.closed_conversation_id:
                    return  # late news of the conversation it was told is closed: not resent from seq 1
                sock.conversation_id, sock.last_seq = conversation_id, 0
            if sock.conversation_id != conversation_id or seq <= sock.last_seq:
                return
            if seq == sock.last_seq + 1:
                if not internal:
                    await sock.send(frame)
                sock.last_seq = seq
                return
            try:
                await self._fill_gap(sock, up_to=seq)
            except Exception as exc:  # noqa: BLE001 - the database failed: caught up later
                self._fell_behind(sock, exc)

    async def _fill_gap(self, sock: VisitorSocket, up_to: int) -> None:
        """Send the socket's missing messages up to ``up_to`` from the database, in order.

        ``last_seq`` moves with every batch sent, so a read failing half way
        leaves the socket exactly where its frames stopped.
        """
        assert sock.conversation_id is not None
        while sock.last_seq < up_to:
            async with self.services.db.read() as session:
                batch = await messages_after(
                    session, sock.conversation_id, sock.last_seq, up_to_seq=up_to, limit=FILL_BATCH
                )
            for message in batch:
                await sock.send(message_frame(message))
            if len(batch) < FILL_BATCH:
                sock.last_seq = up_to
                return
            sock.last_seq = batch[-1].seq

    async def _on_message_change(self, _name: str, data: dict[str, Any]) -> None:
        """An agent edited or deleted a line: ``message_update`` / ``message_delete`` frames.

        Only sockets that already got the message (its seq) are told; a
        socket still behind reads the current text from the database.
        """
        if data.get("internal"):
            return
        frame = data["frame"]
        for sock in list(self._by_visitor.get((data["widget_id"], data.get("visitor_id", "")), ())):
            async with sock.lock:
                if sock.conversation_id == data["conversation_id"] and frame["seq"] <= sock.last_seq:
                    await sock.send(frame)

    async def _on_conversation(self, _name: str, data: dict[str, Any]) -> None:
        """A conversation closed: its sockets get its last lines (if any are missing), then ``closed``."""
        conv = data["conversation"]
        if conv["status"] != "closed":
            return
        for sock in list(self._by_visitor.get((conv["widget_id"], conv["visitor_id"]), ())):
            async with sock.lock:
                if sock.conversation_id != conv["id"]:
                    continue
                if int(conv.get("last_seq") or 0) > sock.last_seq:  # lines not sent yet go first
                    try:
                        await self._fill_gap(sock, up_to=int(conv["last_seq"]))
                    except Exception as exc:  # noqa: BLE001 - caught up (and told) later
                        self._fell_behind(sock, exc)
                        continue
                self._closed(sock)
                await sock.send({"type": "conversation", "conversation_id": conv["id"], "state": "closed"})

    @staticmethod
    def _closed(sock: VisitorSocket) -> None:
        sock.closed_conversation_id = sock.conversation_id
        sock.conversation_id, sock.last_seq = None, 0

    async def _on_typing(self, _name: str, data: dict[str, Any]) -> None:
        if data["from"] == "visitor":
            return
        frame = {"type": "typing", "from": data["from"], "author": data["author"], "active": data["active"]}
        for sock in list(self._by_widget.get(data["widget_id"], ())):
            if sock.conversation_id == data["conversation_id"]:
                await sock.send(frame)

    async def _on_widget_changed(self, _name: str, data: dict[str, Any]) -> None:
        """Texts, colours or position changed: open widgets re-read their config."""
        self._widgets.clear()
        for sock in list(self._by_widget.get(data.get("widget_id", -1), ())):
            await sock.send_text('{"type":"config"}')

    async def _on_resync(self, _name: str, _data: dict[str, Any]) -> None:
        """Events may have been missed (the bus reconnected): catch every socket up from the database."""
        self._widgets.clear()  # widget changes may have been missed too
        for sock in self.all_sockets():
            if sock.conversation_id is not None:
                self._mark_behind(sock)
        self._start_catching_up(now=True)

    # -- catching up from the database --------------------------------------
    def _fell_behind(self, sock: VisitorSocket, exc: BaseException) -> None:
        """A read for ``sock`` failed: it stays where it is and is caught up later."""
        self._mark_behind(sock)
        self._read_failed(exc)
        self._start_catching_up(now=False)

    def _mark_behind(self, sock: VisitorSocket) -> None:
        """Marked anew, and last: the others are tried first next time."""
        self._behind.pop(sock, None)
        self._marks += 1
        self._behind[sock] = self._marks

    def _start_catching_up(self, *, now: bool) -> None:
        if now:
            self._catch_up_now.set()
        running = self._catch_up_task is not None and not self._catch_up_task.done()
        if not running and self._behind:
            self._catch_up_task = asyncio.get_running_loop().create_task(self._catch_up_loop(now), name="widget-catch-up")
            self._catch_up_task.add_done_callback(self._catch_up_done)

    def _catch_up_done(self, task: asyncio.Task[None]) -> None:
        if self._catch_up_task is task:
            self._catch_up_task = None
        if not task.cancelled() and task.exception() is not None:  # a bug: report it, try again later
            log.error("catching widget sockets up stopped", exc_info=task.exception())

    async def _catch_up_loop(self, now: bool) -> None:
        """Catch the sockets behind up; after a failed pass wait (doubling) and try again.

        A resync wakes it at once; a failed gap fill does not (it waits for the
        backoff), so events arriving during an outage cannot turn it into a busy loop.
        """
        delay = self.catch_up_retry_s
        while self._behind:
            if not now:
                self._catch_up_now.clear()
                await wait_for_wake(self._catch_up_now, delay)
            now = False
            self._catch_up_now.clear()
            if not self._behind:  # the sockets behind went away meanwhile
                return
            if await self._catch_up_pass():
                delay = self.catch_up_retry_s
                now = bool(self._behind)  # added meanwhile: go on at once
            else:
                delay = min(delay * 2, self.catch_up_retry_max_s)

    async def _catch_up_pass(self) -> bool:
        """One pass over the sockets behind: True if every one was caught up.

        The conversations' heads (last ``seq``, status) are read for many
        sockets at a time; only a socket that did miss something costs a read
        of its own. The first failure ends the pass (the database is likely
        down): the rest wait for the next one, and the failed socket goes last.
        """
        sockets = list(self._behind.items())
        for start in range(0, len(sockets), HEADS_BATCH):
            # A socket marked again after this (a resync) may miss what these heads miss: it stays.
            chunk = [(s, mark) for s, mark in sockets[start : start + HEADS_BATCH] if self._behind.get(s) == mark]
            ids = sorted({s.conversation_id for s, _ in chunk if s.conversation_id is not None})
            try:
                heads = await self._read_heads(ids)
            except Exception as exc:  # noqa: BLE001 - the database failed: tried again later
                self._read_failed(exc)
                return False
            for sock, mark in chunk:
                async with sock.lock:
                    if self._behind.get(sock) != mark:
                        continue  # gone, or marked again meanwhile: the next round takes it
                    try:
                        await self._catch_up(sock, heads)
                    except Exception as exc:  # noqa: BLE001
                        self._fell_behind(sock, exc)
                        return False
                    del self._behind[sock]
        self._read_recovered()
        return True

    async def _read_heads(self, ids: list[int]) -> dict[int, tuple[int, str]]:
        if not ids:
            return {}
        query = select(Conversation.id, Conversation.last_seq, Conversation.status).where(Conversation.id.in_(ids))
        async with self.services.db.read() as session:
            return {row.id: (row.last_seq, row.status) for row in await session.execute(query)}

    async def _catch_up(self, sock: VisitorSocket, heads: dict[int, tuple[int, str]]) -> None:
        """Under the socket's lock: send what it missed, and tell it if its conversation closed."""
        conv_id = sock.conversation_id
        head = heads.get(conv_id) if conv_id is not None else None
        if head is None:  # no conversation (or it was erased): nothing to send
            return
        last_seq, status = head
        if last_seq > sock.last_seq:
            await self._fill_gap(sock, up_to=last_seq)
        if status == "closed":  # the closing event was missed too
            self._closed(sock)
            await sock.send({"type": "conversation", "conversation_id": conv_id, "state": "closed"})

    def _read_failed(self, exc: BaseException) -> None:
        """Log a failing database once, then a line (no traceback) a minute while it lasts."""
        now = time.monotonic()
        self._failures += 1
        if self._failing_since is None:
            self._failing_since, self._failure_logged_at = now, now
            log.warning(
                "widget sockets: reading missed messages failed; %d socket(s) wait and are caught up"
                " when the database answers", len(self._behind) or 1, exc_info=exc,
            )
        elif now - self._failure_logged_at >= FAILURE_LOG_INTERVAL_S:
            self._failure_logged_at = now
            log.warning(
                "widget sockets: the database still fails (%s) after %.0f s, %d failed reads;"
                " %d socket(s) waiting", type(exc).__name__, now - self._failing_since, self._failures,
                len(self._behind),
            )

    def _read_recovered(self) -> None:
        if self._failing_since is not None:
            log.info(
                "widget sockets: caught up from the database after %.1f s (%d failed reads)",
                time.monotonic() - self._failing_since, self._failures,
            )
            self._failing_since, self._failures = None, 0

    async def close_all(self) -> None:
        """Ask every widget to reconnect (to another process) and close.

        All sockets at once: each close waits for the browser's close frame,
        and 10,000 of those one after another took ~8 s (the whole shutdown
        timeout) while the widgets already told kept backing off further; and
        none waits more than CLOSE_WAIT_S (the restart waits for the slowest).
        """
        task, self._catch_up_task = self._catch_up_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*(self._close(sock) for sock in self.all_sockets()), return_exceptions=True)
        await self.open_conversations.close()  # its connection goes back before the engine is disposed

    @staticmethod
    async def _close(sock: VisitorSocket) -> None:
        await sock.send({"type": "reconnect"})
        try:
            await asyncio.wait_for(sock.ws.close(code=1012, message=b"server restarting"), CLOSE_WAIT_S)
        except asyncio.TimeoutError:
            pass  # sent; the connection is dropped without the browser's reply
