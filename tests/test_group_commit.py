"""Group commit (core/group_commit.py): writes queued together share one transaction,
each caller hears back only after the COMMIT holding its write, and one bad write
fails only its own caller."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import events as ev
from core.bindings import bind_channel
from core.db import Database
from core.events import LocalBus
from core.chat import ChatService
from core.errors import ValidationFailed
from core.group_commit import GroupCommitter
from core.conversations import VisitorContext
from core.models import Conversation, Message, OfflineMessage, OutboxItem, Widget
from core.offline import add_offline_message
from core.webhooks import create_endpoint
from core.widgets import create_widget
from tests.sql_statements import statements

FORM = {"name": "Rita", "email": "rita@example.com", "message": "Call me", "page_url": "https://shop.example/"}


@pytest.fixture
async def widget(db: Database) -> Widget:
    async with db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    return widget


def store(widget: Widget, message: str, *, fail: bool = False) -> Any:
    async def write(session: AsyncSession) -> int:
        row = await add_offline_message(session, widget, {**FORM, "message": message})
        if fail:
            raise RuntimeError(f"{message} cannot be stored")
        return row.id

    return write


async def stored_messages(db: Database) -> list[str]:
    async with db.read() as session:
        return sorted((await session.execute(select(OfflineMessage.message))).scalars())


async def test_writes_queued_together_commit_in_one_transaction(db, widget):
    committer = GroupCommitter(db)
    ids = await asyncio.gather(*(committer.submit(store(widget, f"m{i:02d}")) for i in range(30)))
    assert len(set(ids)) == 30
    assert await stored_messages(db) == [f"m{i:02d}" for i in range(30)]
    # The first write starts a transaction alone; the 29 queued meanwhile share the next one(s).
    assert committer.stats.writes == 30 and committer.stats.batches < 30
    assert committer.stats.largest_batch > 1


async def test_one_failing_write_fails_only_its_caller(db, widget):
    committer = GroupCommitter(db, lanes=1)
    results = await asyncio.gather(
        *(committer.submit(store(widget, f"m{i}", fail=i == 3)) for i in range(6)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, Exception)]
    assert [str(e) for e in failed] == ["m3 cannot be stored"]
    assert await stored_messages(db) == ["m0", "m1", "m2", "m4", "m5"]
    assert committer.stats.retried_singly > 0  # the batch holding m3 was rolled back and replayed alone


async def test_nobody_hears_stored_before_the_commit(db, widget):
    """A writer that dies mid-transaction (a crash) answers nobody "stored", and nothing is stored."""
    committer = GroupCommitter(db, lanes=1)
    inside = asyncio.Event()
    release = asyncio.Event()

    def slow(message: str) -> Any:
        async def write(session: AsyncSession) -> int:
            row = await add_offline_message(session, widget, {**FORM, "message": message})
            inside.set()
            await release.wait()
            return row.id

        return write

    first = asyncio.ensure_future(committer.submit(store(widget, "first")))
    await first  # a batch of one, committed
    waiting = [asyncio.ensure_future(committer.submit(slow(f"w{i}"))) for i in range(3)]
    await inside.wait()
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)  # written, not yet committed: not answered
    lane_task = committer._lanes[0].task
    assert lane_task is not None
    lane_task.cancel()  # the process dies before COMMIT
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, BaseException) for r in results)
    assert await stored_messages(db) == ["first"]


async def test_an_answer_means_the_row_is_readable_elsewhere(db, widget):
    committer = GroupCommitter(db)

    async def submit_then_read(i: int) -> bool:
        row_id = await committer.submit(store(widget, f"m{i}"))
        async with db.read() as session:  # another connection: sees only committed rows
            return await session.get(OfflineMessage, row_id) is not None

    assert all(await asyncio.gather(*(submit_then_read(i) for i in range(20))))


async def test_a_batchs_callers_are_answered_before_the_next_batch_runs(db, widget):
    """Once a batch has committed, its callers (acks to send) go before the writes queued
    meanwhile: on SQLite a batch runs without yielding, so a writer going straight on to the
    next batch left every ack of the last one waiting for it."""
    committer = GroupCommitter(db, lanes=1)
    order: list[str] = []
    later: list[asyncio.Future[int]] = []

    def noting(message: str, *, then_queue: bool = False) -> Any:
        async def write(session: AsyncSession) -> int:
            order.append(f"{message} runs")
            if then_queue:  # lines arriving while this batch is in its transaction
                later.extend(asyncio.ensure_future(committer.submit(noting(f"b{i}"))) for i in range(3))
                await asyncio.sleep(0)
            return (await add_offline_message(session, widget, {**FORM, "message": message})).id

        return write

    async def caller() -> None:
        await committer.submit(noting("a", then_queue=True))
        order.append("a answered")

    await caller()
    await asyncio.gather(*later)
    assert order.index("a answered") < order.index("b0 runs"), order
    assert await stored_messages(db) == ["a", "b0", "b1", "b2"]


async def test_a_caller_cancelled_while_its_write_is_queued_leaves_the_write_and_the_others(db, widget):
    """Cancelling a caller (its socket closed) does not withdraw its queued write, and the
    other writes of its batch are answered as usual."""
    committer = GroupCommitter(db, lanes=1)
    inside, release = asyncio.Event(), asyncio.Event()

    async def held(session: AsyncSession) -> int:
        row = await add_offline_message(session, widget, {**FORM, "message": "held"})
        inside.set()
        await release.wait()
        return row.id

    first = asyncio.ensure_future(committer.submit(held))
    await inside.wait()  # the first batch is in its transaction; these queue behind it
    cancelled = asyncio.ensure_future(committer.submit(store(widget, "cancelled")))
    kept = asyncio.ensure_future(committer.submit(store(widget, "kept")))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    assert isinstance(await first, int) and isinstance(await kept, int)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await stored_messages(db) == ["cancelled", "held", "kept"]


async def test_background_writes_queued_beside_waited_on_ones_go_in_the_next_batch_only(db, widget):
    """A worker's records (background) do not hold up the lines queued beside them: those
    commit first, alone; the records go in the next batch, with whatever queued by then,
    so they wait one batch at most however many lines keep coming."""
    committer = GroupCommitter(db, lanes=1)
    inside, release = asyncio.Event(), asyncio.Event()
    batch_of: dict[str, int] = {}

    def noting(message: str) -> Any:
        async def write(session: AsyncSession) -> int:
            batch_of[message] = committer.stats.batches
            if message == "first":
                inside.set()
                await release.wait()
            return (await add_offline_message(session, widget, {**FORM, "message": message})).id

        return write

    first = asyncio.ensure_future(committer.submit(noting("first")))
    await inside.wait()  # the first batch is in its transaction; these queue behind it
    queued = [
        asyncio.ensure_future(committer.submit(noting(name), background=name.startswith("record")))
        for name in ("record1", "line1", "record2", "line2")
    ]
    await asyncio.sleep(0)
    release.set()
    await first
    # The lines' batch is committing: a line and a record that arrive now queue behind it.
    later = [
        asyncio.ensure_future(committer.submit(noting(name), background=name.startswith("record")))
        for name in ("record3", "line3")
    ]
    await asyncio.gather(*queued, *later)
    assert batch_of["line1"] == batch_of["line2"] == batch_of["first"] + 1
    assert batch_of["record1"] == batch_of["record2"] == batch_of["line1"] + 1  # held back once, not twice
    assert batch_of["record3"] == batch_of["line3"] == batch_of["record1"]
    assert len(await stored_messages(db)) == 7


async def test_a_failing_commit_fails_every_write_of_the_batch_that_could_not_be_retried(db, widget, monkeypatch):
    committer = GroupCommitter(db, lanes=1)
    real_write = db.write
    calls = 0

    def broken_write(**_kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError("database went away")

    monkeypatch.setattr(db, "write", broken_write)
    results = await asyncio.gather(*(committer.submit(store(widget, f"m{i}")) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    monkeypatch.setattr(db, "write", real_write)
    assert await stored_messages(db) == []


# -- visitor lines through ChatService -----------------------------------------------


@pytest.fixture
def chat(db: Database) -> ChatService:
    return ChatService(db, LocalBus())


async def test_a_burst_from_one_visitor_gets_gap_free_seqs_in_order(db, widget, chat):
    results = await asyncio.gather(
        *(chat.visitor_message(widget, "v1", f"line {i}", client_id=f"c{i}") for i in range(25))
    )
    convs = {conv.id for conv, _m, _d in results}
    assert len(convs) == 1  # concurrent first lines still open only one chat
    seqs = [m.seq for _c, m, _d in results]
    assert seqs == list(range(1, 26))  # submission order = seq order, no gap
    async with db.read() as session:
        rows = (await session.execute(select(Message.seq, Message.text).order_by(Message.seq))).all()
        relays = (await session.execute(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "slack.relay"))).scalar()
    assert [(s, t) for s, t in rows] == [(i + 1, f"line {i}") for i in range(25)]
    assert relays == 25  # each line's relay row committed with it
    assert db.group_commit is not None and db.group_commit.stats.largest_batch > 1


async def test_a_resend_in_the_same_batch_is_stored_once_and_leaves_no_gap(db, widget, chat):
    await chat.visitor_message(widget, "v1", "hello", client_id="a")
    results = await asyncio.gather(
        chat.visitor_message(widget, "v1", "second", client_id="b"),
        chat.visitor_message(widget, "v1", "second", client_id="b"),  # the widget resent after a lost ack
        chat.visitor_message(widget, "v1", "third", client_id="c"),
    )
    (_c1, m1, dup1), (_c2, m2, dup2), (_c3, m3, dup3) = results
    assert m1.id == m2.id and (dup1, dup2, dup3) == (False, True, False)
    assert m3.seq == m1.seq + 1 == 3
    again = await chat.visitor_message(widget, "v1", "second", client_id="b")
    assert again[1].id == m1.id and again[2] is True
    after = await chat.visitor_message(widget, "v1", "fourth", client_id="d")
    assert after[1].seq == 4
    async with db.read() as session:
        seqs = list((await session.execute(select(Message.seq).order_by(Message.seq))).scalars())
    assert seqs == [1, 2, 3, 4]


async def test_a_bad_line_is_refused_before_it_can_join_a_batch(db, widget, chat):
    results = await asyncio.gather(
        chat.visitor_message(widget, "v1", "fine", client_id="a"),
        chat.visitor_message(widget, "v1", "   ", client_id="b"),
        chat.visitor_message(widget, "v2", "also fine", client_id="x" * 65),
        chat.visitor_message(widget, "v3", "fine too", client_id="c"),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["tuple", "ValidationFailed", "ValidationFailed", "tuple"]
    assert isinstance(results[1], ValidationFailed)
    assert db.group_commit is not None and db.group_commit.stats.retried_singly == 0


async def test_lines_of_many_visitors_each_keep_their_own_sequence(db, widget, chat):
    async def visitor(v: int) -> list[int]:
        return [(await chat.visitor_message(widget, f"v{v}", f"{v}-{i}", client_id=f"{i}"))[1].seq for i in range(5)]

    per_visitor = await asyncio.gather(*(visitor(v) for v in range(12)))
    assert per_visitor == [[1, 2, 3, 4, 5]] * 12


async def open_chats(chat: ChatService, widget: Widget, visitors: int) -> None:
    for v in range(visitors):
        await chat.visitor_message(widget, f"v{v}", "hello", client_id="first")


async def test_lines_in_open_chats_share_one_statement_per_batch_on_postgresql_two_on_sqlite(db, widget, chat):
    """On PostgreSQL one statement stores the lines and their relays and commits on its own
    (a round trip is what a batch waits for); on SQLite a reserve and an INSERT."""
    await open_chats(chat, widget, 10)
    assert db.group_commit is not None
    batches, first = db.group_commit.stats.batches, db.group_commit.stats.stored_first
    with statements(db) as everything:
        results = await asyncio.gather(*(
            chat.visitor_message(widget, f"v{i % 10}", f"line {i}", client_id=f"c{i}",
                                 context=VisitorContext(page_url=f"https://shop.example/{i}"))
            for i in range(40)
        ))
    seen = [s.lstrip() for s in everything]
    seen = [s for s in seen if s.startswith(("INSERT INTO messages", "UPDATE conversations", "WITH v AS", "INSERT INTO conversations"))]
    used = db.group_commit.stats.batches - batches
    assert used < 40 and db.group_commit.stats.retried_singly == 0
    # Per batch, not per line (a batch of one line writes it alone).
    if db.is_sqlite:
        assert len([s for s in seen if s.startswith("INSERT INTO messages")]) == used
        assert len([s for s in seen if s.startswith("UPDATE conversations")]) == used
        assert len(seen) == 2 * used
    else:  # the lines and their relays, one statement outside any transaction
        assert db.group_commit.stats.stored_first - first == 40
        assert len([s for s in everything if s.lstrip().startswith("WITH l AS")]) == used
        assert seen == [] and not any(s.lstrip().startswith("INSERT INTO outbox") for s in everything)
    for v in range(10):  # each chat's lines in submission order, gap-free after its "hello"
        assert [m.seq for _c, m, _d in results[v::10]] == [2, 3, 4, 5]
        assert [c.last_seq for c, _m, _d in results[v::10]] == [2, 3, 4, 5]
    async with db.read() as session:
        pages = dict((await session.execute(select(Conversation.visitor_id, Conversation.page_url))).all())
        relays = (await session.execute(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "slack.relay"))).scalar()
    assert pages == {f"v{v}": f"https://shop.example/{30 + v}" for v in range(10)}  # the last page each was on
    assert relays == 50


async def test_a_lone_line_takes_the_bulk_statement_on_postgresql_and_a_resend_is_still_one_line(db, widget, chat):
    """A batch of one line: on PostgreSQL the bulk statement (one round trip) instead of the
    single-line reserve and INSERT; a resend of it falls back and is answered as stored."""
    await open_chats(chat, widget, 1)
    with statements(db) as everything:
        conv, message, duplicate = await chat.visitor_message(widget, "v0", "alone", client_id="lone")
    writes = [s.lstrip() for s in everything if s.lstrip().startswith(("WITH v AS", "WITH l AS", "UPDATE conversations", "INSERT INTO messages"))]
    if db.is_sqlite:
        assert [w.split(" ")[0] for w in writes] == ["UPDATE", "INSERT"]
    else:
        assert [w.split(" ")[0] for w in writes] == ["WITH"]
        assert not any(s.lstrip().startswith("INSERT INTO outbox") for s in everything)  # in that statement
    assert (message.seq, conv.last_seq, duplicate) == (2, 2, False)
    again, resent, duplicate = await chat.visitor_message(widget, "v0", "alone", client_id="lone")
    assert (resent.id, resent.seq, duplicate) == (message.id, 2, True)
    later, _m, _d = await chat.visitor_message(widget, "v0", "next", client_id="next")
    assert _m.seq == 3  # the resend left no gap
    async with db.read() as session:
        texts = (await session.execute(select(Message.text).order_by(Message.seq))).scalars().all()
    assert texts == ["hello", "alone", "next"]


async def test_first_lines_in_a_batch_open_their_chats_beside_lines_in_open_ones(db, widget, chat):
    await open_chats(chat, widget, 5)
    results = await asyncio.gather(*(
        chat.visitor_message(widget, f"v{i}", f"line {i}", client_id=f"c{i}") for i in range(10)
    ))
    assert [m.seq for _c, m, _d in results] == [2] * 5 + [1] * 5
    assert len({c.id for c, _m, _d in results}) == 10


@pytest.mark.parametrize("started_webhook", [True, False], ids=["started-webhook", "relays-only"])
async def test_new_visitors_arriving_together_open_their_chats_in_one_statement_per_batch(db, widget, started_webhook):
    """A burst of first lines (a page with the widget goes live) opens the chats in bulk: each
    chat takes its first line's context, announces itself once and plans its
    ``conversation.started`` webhook, and its lines get seqs 1, 2 ... in order.

    On PostgreSQL, when a new chat owes only its relays (no such webhook), the one
    self-committing statement opens it, with the same result."""
    bus = LocalBus()
    announced: list[dict[str, Any]] = []

    async def on_updated(_name: str, data: dict[str, Any]) -> None:
        announced.append(data)

    bus.subscribe(ev.CONVERSATION_UPDATED, on_updated)
    chat = ChatService(db, bus)
    if started_webhook:
        async with db.write() as session:
            await create_endpoint(session, widget, {"url": "https://hooks.example/in", "events": ["conversation.started"]})

    def context(i: int) -> VisitorContext:
        v = i % 10
        return VisitorContext(page_url=f"https://shop.example/{i}", page_title=f"Page {i}", language="de",
                              timezone="Europe/Berlin", name=f"Visitor {v}", email=f"v{v}@example.com")

    with statements(db) as everything:
        results = await asyncio.gather(*(
            chat.visitor_message(widget, f"v{i % 10}", f"line {i}", client_id=f"c{i}", context=context(i))
            for i in range(30)
        ))
    assert db.group_commit is not None and db.group_commit.stats.retried_singly == 0
    opens = [s for s in everything if s.lstrip().startswith("INSERT INTO conversations")]
    at_once = [s for s in everything if s.lstrip().startswith("WITH l AS")]
    if started_webhook or db.is_sqlite:
        assert 1 <= len(opens) < 5, opens  # per batch, not per chat (a batch of one line writes it alone)
    else:  # lines, chats and relays in one statement per batch, no transaction
        assert not opens and 1 <= len(at_once) < 5, (opens, at_once)
        assert db.group_commit.stats.stored_first == 30
    for v in range(10):  # one chat per visitor, its lines in submission order
        assert len({c.id for c, _m, _d in results[v::10]}) == 1
        assert [m.seq for _c, m, _d in results[v::10]] == [1, 2, 3]
        assert [m.text for _c, m, _d in results[v::10]] == [f"line {v}", f"line {10 + v}", f"line {20 + v}"]
    # Announced once per chat, as its first line saw it.
    assert sorted(e["conversation"]["visitor_id"] for e in announced) == [f"v{v}" for v in range(10)]
    assert all(e["conversation"]["last_seq"] == 1 for e in announced)
    async with db.read() as session:
        chats = {c.visitor_id: c for c in (await session.execute(select(Conversation))).scalars()}
        kinds = Counter((await session.execute(select(OutboxItem.kind))).scalars())
    assert len(chats) == 10
    for v in range(10):
        c = chats[f"v{v}"]
        assert (c.visitor_name, c.visitor_email, c.page_title, c.language, c.timezone, c.status, c.last_seq) == (
            f"Visitor {v}", f"v{v}@example.com", f"Page {v}", "de", "Europe/Berlin", "open", 3)
        assert c.page_url == f"https://shop.example/{20 + v}"  # the last page the visitor was on
    assert kinds == ({"slack.relay": 30, "webhook.send": 10} if started_webhook else {"slack.relay": 30})


async def test_a_visitor_with_two_open_chats_gets_lines_in_the_newest_as_before(db, widget, chat):
    await open_chats(chat, widget, 2)
    first = db.group_commit.stats.stored_first if db.group_commit is not None else 0
    async with db.write() as session:  # a second open chat for v0 (it should not happen; it must still work)
        newer = Conversation(widget_id=widget.id, visitor_id="v0", status="open", last_seq=0)
        session.add(newer)
    async with db.read() as session:
        newest = (await session.execute(select(func.max(Conversation.id)).where(Conversation.visitor_id == "v0"))).scalar()
    results = await asyncio.gather(*(
        chat.visitor_message(widget, f"v{i % 2}", f"line {i}", client_id=f"c{i}") for i in range(6)
    ))
    assert {c.id for c, _m, _d in results[0::2]} == {newest}
    assert [m.seq for _c, m, _d in results[0::2]] == [1, 2, 3]
    assert [m.seq for _c, m, _d in results[1::2]] == [2, 3, 4]
    assert db.group_commit is not None
    if db.is_sqlite:  # the bulk form saw two open chats and stood aside
        assert db.group_commit.stats.retried_singly > 0
    else:  # the one-statement form picks the newest chat itself
        assert db.group_commit.stats.stored_first - first == 6


# -- the SQLite write lock's fast lane -------------------------------------------------


async def test_visitor_writes_go_ahead_of_queued_background_writes_but_never_starve_them():
    from core.db import WriteLock

    lock = WriteLock()
    order: list[str] = []

    async def hold(name: str, urgent: bool) -> None:
        await lock.acquire(urgent=urgent)
        order.append(name)
        await asyncio.sleep(0)
        lock.release()

    await lock.acquire()
    tasks = [asyncio.ensure_future(hold(f"bg{i}", False)) for i in range(3)]
    await asyncio.sleep(0)
    tasks += [asyncio.ensure_future(hold(f"visitor{i}", True)) for i in range(3)]
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*tasks)
    # A visitor first, then turns alternate while both kinds wait.
    assert order == ["visitor0", "bg0", "visitor1", "bg1", "visitor2", "bg2"]
    assert not lock.locked()


async def test_a_cancelled_waiter_does_not_keep_the_lock():
    from core.db import WriteLock

    lock = WriteLock()
    await lock.acquire()
    waiter = asyncio.ensure_future(lock.acquire(urgent=True))
    await asyncio.sleep(0)
    waiter.cancel()
    lock.release()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(lock.acquire(), 1)  # free again
    lock.release()


async def test_a_burst_of_lines_wakes_the_dispatcher_a_few_times_after_the_last_commit(db, widget):
    from core import events as ev

    bus = LocalBus()
    chat = ChatService(db, bus)
    wakes: list[int] = []

    async def count_rows(_name: str, _data: dict[str, Any]) -> None:
        async with db.read() as session:
            wakes.append(int((await session.execute(select(func.count()).select_from(OutboxItem))).scalar_one()))

    bus.subscribe(ev.OUTBOX_ENQUEUED, count_rows)
    await asyncio.gather(*(chat.visitor_message(widget, f"v{i}", "hi", client_id="a") for i in range(30)))
    for _ in range(50):
        await asyncio.sleep(0.01)
        await bus.drain()
    assert 1 <= len(wakes) < 30  # coalesced, not one Redis round trip per line
    assert wakes[-1] == 30  # the last wake-up came after every row was committed


async def test_lines_that_keep_coming_wake_the_dispatcher_at_a_pace_the_first_at_once(db, widget, monkeypatch):
    """A steady stream of lines (each committed alone) wakes the dispatcher at most once per
    WAKE_EVERY_S, not once per line; the first line's wake-up is not delayed, and the last
    wake-up comes after the last commit."""
    from core import chat as chat_module
    from core import events as ev

    monkeypatch.setattr(chat_module, "WAKE_EVERY_S", 0.05)
    bus = LocalBus()
    chat = ChatService(db, bus)
    wakes: list[float] = []

    async def woken(_name: str, _data: dict[str, Any]) -> None:
        wakes.append(asyncio.get_running_loop().time())

    bus.subscribe(ev.OUTBOX_ENQUEUED, woken)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await chat.visitor_message(widget, "v0", "first", client_id="c0")
    await asyncio.sleep(0.01)  # the wake-up goes out in a task of its own
    await bus.drain()
    assert len(wakes) == 1 and wakes[0] - started < 0.05  # at once
    lines = 1
    while loop.time() - started < 0.3:
        await chat.visitor_message(widget, f"v{lines}", "hi", client_id="c")
        lines += 1
    last_commit = loop.time()
    await asyncio.sleep(0.15)
    await bus.drain()
    assert lines >= 10, lines  # enough lines to tell a pace from one wake-up per line
    assert 2 <= len(wakes) <= 0.3 / 0.05 + 2, (len(wakes), lines)
    assert wakes[-1] >= last_commit


async def test_lines_written_together_keep_every_character(db, widget, chat):
    """The bulk statements carry text as arrays (JSON rows on SQLite): nothing may be lost or changed."""
    await open_chats(chat, widget, 1)  # one visitor: one lane on PostgreSQL too, so one batch
    texts = ['emoji 😀 and 你好', 'quotes " \' and \\ backslash', 'lines\nand\ttabs', '{"json": [1, 2]}']
    with statements(db) as everything:
        results = await asyncio.gather(*(
            chat.visitor_message(widget, "v0", text, client_id=f"t{i}") for i, text in enumerate(texts)
        ))
    inserts = [s for s in everything if s.lstrip().startswith(("INSERT INTO messages", "WITH v AS", "WITH l AS"))]
    assert len(inserts) == 1  # together
    assert db.group_commit is not None and db.group_commit.stats.retried_singly == 0
    async with db.read() as session:
        stored = {m.id: m.text for m in (await session.execute(select(Message))).scalars()}
    assert [stored[m.id] for _c, m, _d in results] == texts
    assert [m.text for _c, m, _d in results] == texts


async def test_the_bulk_reserve_looks_each_line_up_by_visitor_not_every_open_chat(db, widget, chat):
    """With many chats open, a batch's UPDATE finds each line's chat through the (widget,
    visitor) index; walking every open chat made it grow with them (1.1 ms at 1,200)."""
    from datetime import datetime, timezone

    from sqlalchemy import text

    from core.line_batches import _bulk_params, _many_statements

    async with db.write() as session:
        await session.execute(Conversation.__table__.insert(), [
            {"widget_id": widget.id, "visitor_id": f"x{i}", "status": "open", "last_seq": 0} for i in range(2000)
        ])
        if not db.is_sqlite:
            await session.execute(text("ANALYZE conversations"))
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    columns = {"widget_ids": [widget.id], "visitor_ids": ["x7"], "counts": [1], "page_urls": [None]}
    if not db.is_sqlite:  # PostgreSQL reserves and inserts in one statement: the lines too
        columns.update(line_widget_ids=[widget.id], line_visitor_ids=["x7"], line_ranks=[1], texts=["hi"], client_ids=[None])
    params = _bulk_params(dialect, columns, datetime.now(timezone.utc))
    bulk = _many_statements(dialect)
    reserve = bulk.reserve if db.is_sqlite else bulk.append
    async with db.read() as session:
        conn = await session.connection()
        compiled = reserve.compile(dialect=conn.dialect)
        args = [params[name] for name in compiled.positiontup or ()]
        raw = (await conn.get_raw_connection()).driver_connection
        if db.is_sqlite:
            plan = [row[3] for row in raw.raw.execute("EXPLAIN QUERY PLAN " + str(compiled), args)]
            assert plan[0].startswith("SCAN json_each"), plan
            assert "ix_conversations_widget_visitor" in plan[1], plan
        else:
            plan = [row[0] for row in await raw.fetch("EXPLAIN " + str(compiled), *args)]
            assert not any("Seq Scan on conversations" in line for line in plan), plan
            # The one-statement store, too; and not through the index on status, which a
            # plan made before the table had statistics chose (a fresh database under load).
            store = bulk.store.compile(dialect=conn.dialect)
            values = {"widget_ids": [widget.id], "visitor_ids": ["x7"], "texts": ["hi"], "client_ids": [None],
                      "page_urls": [None], "may_open": [True], "names": [None], "emails": [None], "page_titles": [None],
                      "languages": [None], "timezones": [None], "relay_widget_ids": [widget.id], "relay_binding_ids": [1],
                      "relay_kinds": ["slack.relay"], "ordering_prefix": "relay:", "now": datetime.now(timezone.utc)}
            for stats in ("with statistics", "without"):
                if stats == "without":
                    await raw.execute("DELETE FROM pg_statistic WHERE starelid = 'conversations'::regclass")
                    await raw.execute("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'conversations'::regclass")
                for statement, given in ((store, values), (compiled, params)):  # and the transactional one
                    plan = [row[0] for row in await raw.fetch(
                        "EXPLAIN " + str(statement), *[given[name] for name in statement.positiontup or ()])]
                    assert not any("ix_conversations_status" in line for line in plan), (stats, plan)
                    assert any("ix_conversations_widget_visitor" in line for line in plan), (stats, "\n".join(plan))


async def test_relays_written_with_the_lines_are_the_rows_the_planner_writes(db, widget, chat):
    """The one-statement path on PostgreSQL builds the relay rows in SQL: they must be the
    rows message_relay_rows plans (kind, payload, ordering key, reference), one per line and
    channel, with ids in seq order per thread (the relay posts a thread's rows in id order)."""
    from core.fanout import message_relay_rows

    async with db.write() as session:
        await bind_channel(session, widget.id, "teams", workspace_id="tenant-1", channel_id="19:abc@thread.tacv2")
    results = await asyncio.gather(*(  # new visitors: their chats are opened by the same statement
        chat.visitor_message(widget, f"v{i % 3}", f"line {i}", client_id=f"r{i}") for i in range(12)
    ))
    async with db.read() as session:
        rows = list((await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars())
        expected = []
        for conv, message, _dup in results:
            expected += await message_relay_rows(session, conv, message)
    def shape(row: Any) -> tuple[Any, ...]:
        get = row.get if isinstance(row, dict) else (lambda name: getattr(row, name))
        return (get("kind"), get("payload"), get("ordering_key"), get("ref_type"), get("ref_id"), get("status"), get("attempts"))
    assert sorted(map(shape, rows), key=repr) == sorted(map(shape, expected), key=repr)
    assert len(rows) == 24
    by_thread: dict[str, list[int]] = {}
    seq_of = {m.id: m.seq for _c, m, _d in results}
    for row in rows:  # in id order: each thread's messages in seq order
        by_thread.setdefault(row.ordering_key, []).append(seq_of[row.payload["message_id"]])
    assert all(seqs == sorted(seqs) for seqs in by_thread.values()) and len(by_thread) == 6
    if not db.is_sqlite:
        assert db.group_commit is not None and db.group_commit.stats.stored_first >= 12


async def test_a_resend_among_new_lines_takes_no_seq_and_is_answered_as_stored(db, widget, chat):
    await open_chats(chat, widget, 2)
    _c, first, _d = await chat.visitor_message(widget, "v0", "question", client_id="q")
    results = await asyncio.gather(
        chat.visitor_message(widget, "v0", "question", client_id="q"),  # resent: its ack was lost
        chat.visitor_message(widget, "v0", "more", client_id="m1"),
        chat.visitor_message(widget, "v1", "other", client_id="o1"),
        chat.visitor_message(widget, "v0", "even more", client_id="m2"),
    )
    (_, resent, dup), (_, m1, d1), (_, o1, _), (_, m2, d2) = results
    assert (resent.id, resent.seq, dup) == (first.id, 2, True)
    assert (m1.seq, m2.seq, d1, d2, o1.seq) == (3, 4, False, False, 2)
    async with db.read() as session:
        texts = list((await session.execute(
            select(Message.text).join(Conversation).where(Conversation.visitor_id == "v0").order_by(Message.seq)
        )).scalars())
        relays = (await session.execute(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "slack.relay"))).scalar()
    assert texts == ["hello", "question", "more", "even more"]
    assert relays == 6  # one per stored line: 2 hellos, the question, more, other, even more


async def test_a_first_line_tries_the_one_statement_store_only_where_it_can_open_the_chat(db, widget, chat):
    """A chat that owes more than its relays when it starts (a ``conversation.started``
    webhook, a push) is opened in a transaction: the one-statement store would cost a
    new visitor's line a round trip for nothing there. Elsewhere it opens the chat
    itself (PostgreSQL)."""
    with statements(db) as plain:
        _c, message, _d = await chat.visitor_message(widget, "newcomer", "hello", client_id="h")
    assert message.seq == 1
    assert any(s.lstrip().startswith("WITH l AS") for s in plain) == (not db.is_sqlite)
    async with db.write() as session:
        await create_endpoint(session, widget, {"url": "https://hooks.example/in", "events": ["conversation.started"]})
    with statements(db) as first:
        await chat.visitor_message(widget, "second", "hello", client_id="h")
    with statements(db) as again:
        _c, message, _d = await chat.visitor_message(widget, "second", "anyone there?", client_id="a")
    assert not any(s.lstrip().startswith("WITH l AS") for s in first)
    assert any(s.lstrip().startswith("WITH l AS") for s in again) == (not db.is_sqlite)
    assert message.seq == 2
    async with db.read() as session:
        kinds = Counter((await session.execute(select(OutboxItem.kind))).scalars())
    assert kinds == {"slack.relay": 3, "webhook.send": 1}


async def test_a_first_line_leaves_the_one_statement_store_while_an_agent_takes_pushes(db, chat):
    """A new chat owes a push to agents with a Pushover key: the transaction opens it."""
    from core.agents import create_agent
    from core.models import AgentPushover

    async with db.write() as session:
        widget = await create_widget(session, {"name": "Pushed"})
        agent = await create_agent(session, {"name": "Ada", "email": "ada@example.com"})
        session.add(AgentPushover(agent_id=agent.id, user_key="u" * 30))
    with statements(db) as first:
        _c, message, _d = await chat.visitor_message(widget, "newcomer", "hello", client_id="h")
    assert message.seq == 1
    assert not any(s.lstrip().startswith("WITH l AS") for s in first)
