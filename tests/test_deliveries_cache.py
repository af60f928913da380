"""The cache of each widget's destinations (core/destinations.py) that delivery
planning reads: read once, and dropped by every change to bindings, webhook
endpoints or Pushover keys, in this process or (through the bus) in another."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, text

from adapters.channel_relay import ChannelRelay
from core import events as ev
from core.bindings import bind_channel, unbind_channel
from core.chat import ChatService
from core.db import Database
from core.events import LocalBus
from core.models import Agent, ChannelBinding, OutboxItem, WebhookEndpoint, Widget
from core.outbox import Outcome
from core.pushover import clear_user_key, set_user_key
from core.webhooks import create_endpoint, disable
from core.widgets import create_widget
from tests.sql_statements import statements

PUSH_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"


async def new_widget(db: Database, **settings: Any) -> Widget:
    async with db.write() as session:
        return await create_widget(session, {"name": "Shop", **settings})


async def kinds(db: Database) -> list[str]:
    async with db.read() as session:
        rows = (await session.execute(select(OutboxItem.kind).order_by(OutboxItem.id))).scalars()
        return list(rows)


async def clear_outbox(db: Database) -> None:
    async with db.write() as session:
        await session.execute(OutboxItem.__table__.delete())


async def test_planning_reads_a_widgets_destinations_once(db):
    widget = await new_widget(db)
    async with db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    chat = ChatService(db, LocalBus())
    await chat.visitor_message(widget, "v1", "hello", client_id="a")
    reads = db.destinations.reads
    for i in range(10):
        await chat.visitor_message(widget, f"v{i % 3}", f"line {i}", client_id=f"c{i}")
    assert db.destinations.reads == reads  # every later line planned from the cache
    assert (await kinds(db)).count("slack.relay") == 11


async def test_binding_or_unbinding_a_channel_shows_at_the_next_line(db):
    widget = await new_widget(db)
    chat = ChatService(db, LocalBus())
    await chat.visitor_message(widget, "v1", "nobody bound yet", client_id="a")
    assert await kinds(db) == []
    async with db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    await chat.visitor_message(widget, "v1", "now relayed", client_id="b")
    assert await kinds(db) == ["slack.relay"]
    async with db.write() as session:
        assert await unbind_channel(session, widget.id, "slack")
    await chat.visitor_message(widget, "v1", "not relayed any more", client_id="c")
    assert await kinds(db) == ["slack.relay"]


async def test_webhook_endpoints_added_or_disabled_show_at_the_next_conversation(db):
    widget = await new_widget(db)
    chat = ChatService(db, LocalBus())
    await chat.visitor_message(widget, "v1", "first chat", client_id="a")
    async with db.write() as session:
        endpoint = await create_endpoint(session, widget, {"url": "https://hooks.example/in"})
    await chat.visitor_message(widget, "v2", "second chat", client_id="a")
    assert await kinds(db) == ["webhook.send"]
    async with db.write() as session:
        row = await session.get(WebhookEndpoint, endpoint.id)
        assert row is not None
        disable(row, "410 Gone")  # as the worker does when the receiver says Gone
    await chat.visitor_message(widget, "v3", "third chat", client_id="a")
    assert await kinds(db) == ["webhook.send"]


async def test_a_new_pushover_key_gets_pushes_at_once(db):
    widget = await new_widget(db)
    chat = ChatService(db, LocalBus())
    await chat.visitor_message(widget, "v1", "no key yet", client_id="a")  # caches "no agent has a key"
    agent_id = await add_agent_to(db, "ana@shop.example")
    async with db.write() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        await set_user_key(session, agent, PUSH_KEY)
    await chat.visitor_message(widget, "v2", "new chat", client_id="a")
    assert await kinds(db) == ["pushover.send"]
    async with db.write() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None and await clear_user_key(session, agent)
    await chat.visitor_message(widget, "v3", "another chat", client_id="a")
    assert await kinds(db) == ["pushover.send"]


async def add_agent_to(db: Database, email: str) -> int:
    async with db.write() as session:
        agent = Agent(name="Ana", email=email, on_duty=True, stay_available=True)
        session.add(agent)
        await session.flush()
        return agent.id


async def test_a_change_in_another_process_arrives_through_the_bus(db, db_url):
    """Two Database objects on one database stand for two processes sharing a bus (Redis)."""
    bus = LocalBus()
    other = Database(db_url)
    try:
        chat_here = ChatService(db, bus)
        ChatService(other, bus)  # the other process: its changes are published on the bus
        widget = await new_widget(db)
        await chat_here.visitor_message(widget, "v1", "cached: no channel", client_id="a")
        async with other.write() as session:
            await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
        await other.destinations.published()
        await bus.drain()
        await chat_here.visitor_message(widget, "v1", "relayed", client_id="b")
        assert await kinds(db) == ["slack.relay"]
    finally:
        await other.dispose()


async def test_the_bus_events_drop_entries(db):
    bus = LocalBus()
    db.destinations.watch(bus)
    widget = await new_widget(db)
    async with db.read() as session:
        await db.destinations.of(session, widget.id)
        await db.destinations.any_push_key(session)
    for name, data in (
        (ev.DESTINATIONS_CHANGED, {"widget_id": widget.id}),
        (ev.WIDGET_CHANGED, {"widget_id": widget.id}),
        (ev.RESYNC, {}),
        (ev.DESTINATIONS_CHANGED, {"widget_id": None}),
    ):
        reads = db.destinations.reads
        await bus.publish(name, data)
        await bus.drain()
        async with db.read() as session:
            await db.destinations.of(session, widget.id)
        assert db.destinations.reads == reads + 1, name


async def test_a_change_made_behind_its_back_shows_within_the_ttl(db):
    widget = await new_widget(db)
    db.destinations.ttl_s = 0.2
    chat = ChatService(db, LocalBus())
    await chat.visitor_message(widget, "v1", "cached: no channel", client_id="a")
    async with db.engine.begin() as conn:  # raw SQL: no ORM event, no bus
        await conn.execute(
            text(
                "INSERT INTO channel_bindings (widget_id, platform, workspace_id, channel_id, status, config, created_at, updated_at) "
                "VALUES (:w, 'slack', 'T1', 'C1', 'ok', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"w": widget.id},
        )
    await asyncio.sleep(0.25)
    await chat.visitor_message(widget, "v1", "relayed", client_id="b")
    assert await kinds(db) == ["slack.relay"]


async def test_a_rolled_back_change_drops_nothing_and_publishes_nothing(db):
    bus = LocalBus()
    published: list[dict[str, Any]] = []

    async def record(_name: str, data: dict[str, Any]) -> None:
        published.append(data)

    bus.subscribe(ev.DESTINATIONS_CHANGED, record)
    ChatService(db, bus)
    widget = await new_widget(db)
    await db.destinations.published()
    await bus.drain()
    published.clear()
    try:
        async with db.write() as session:
            await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
            raise RuntimeError("changed my mind")
    except RuntimeError:
        pass
    await db.destinations.published()
    await bus.drain()
    assert published == []
    async with db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    await db.destinations.published()
    await bus.drain()
    assert published == [{"widget_id": widget.id}]


async def test_offline_messages_plan_from_the_cache_too(db):
    from core.deliveries import plan_offline_message
    from core.offline import store_offline_message

    widget = await new_widget(db, notify_emails=["team@shop.example"])
    async with db.write() as session:
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    form = {"email": "rita@example.com", "message": "Call me", "page_url": "https://shop.example/"}
    for _ in range(2):
        async with db.write() as session:
            row = await store_offline_message(session, widget, form)
            await plan_offline_message(session, widget, row)
    reads = db.destinations.reads
    async with db.write() as session:
        row = await store_offline_message(session, widget, form)
        await plan_offline_message(session, widget, row)
    assert db.destinations.reads == reads
    assert sorted(await kinds(db)) == ["email.offline_message"] * 3 + ["slack.offline_post"] * 3


class _RecordingRelay(ChannelRelay):
    """A platform whose deliveries only note the binding they were handed."""

    platform, label = "test", "Test"

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.seen: list[tuple[int, str]] = []

    async def _relay(self, payload: dict[str, Any], binding: ChannelBinding) -> Outcome:
        self.seen.append((binding.id, binding.status))
        return Outcome(True)

    _root_update = _offline_post = _digest = _agents_away = _relay


def _binding_reads(seen: list[str]) -> list[str]:
    """The reads of one channel binding among ``seen`` (what a delivery's binding lookup costs)."""
    return [s for s in seen if s.startswith("SELECT") and "FROM channel_bindings WHERE" in s]


async def test_deliveries_to_one_binding_read_it_once_and_see_it_marked_broken_at_once(db):
    widget = await new_widget(db)
    async with db.write() as session:
        binding = await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    relay = _RecordingRelay(db)
    deliver = relay.handlers()["test.relay"]
    item = OutboxItem(kind="test.relay", payload={"binding_id": binding.id})
    with statements(db) as seen:
        for _ in range(5):
            assert (await deliver(item)).ok
    assert len(_binding_reads(seen)) == 1  # the first delivery read it; the others were handed the kept row
    await relay._set_broken(binding.id, "channel_not_found")  # a change through a session of its own
    await deliver(item)
    assert relay.seen[-1] == (binding.id, "broken")  # read again: the mark dropped the kept row


async def test_a_delivery_to_a_removed_binding_fails_for_good_even_if_it_was_kept(db):
    widget = await new_widget(db)
    async with db.write() as session:
        binding = await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    relay = _RecordingRelay(db)
    deliver = relay.handlers()["test.relay"]
    item = OutboxItem(kind="test.relay", payload={"binding_id": binding.id})
    assert (await deliver(item)).ok
    async with db.write() as session:
        await unbind_channel(session, widget.id, "slack")
    outcome = await deliver(item)
    assert not outcome.ok and outcome.permanent and "removed" in (outcome.detail or "")


async def test_a_binding_read_before_a_drop_is_not_kept(db):
    widget = await new_widget(db)
    async with db.write() as session:
        binding = await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    cache = db.destinations
    generation = cache.generation
    cache.drop()  # a change committed while the row was being read
    cache.keep_binding(binding, generation)
    assert cache.binding(binding.id) is None
    cache.keep_binding(binding, cache.generation)
    assert cache.binding(binding.id) is binding


async def test_kept_bindings_gone_stale_are_read_again_together(db):
    """Rows kept for deliveries go stale together after the TTL: the first miss reads the
    other stale ones in the same query, and one removed meanwhile is forgotten."""
    bindings = []
    for n in range(5):
        widget = await new_widget(db)
        async with db.write() as session:
            bindings.append(await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id=f"C{n}"))
    relay = _RecordingRelay(db)
    deliver = relay.handlers()["test.relay"]
    for b in bindings:
        assert (await deliver(OutboxItem(kind="test.relay", payload={"binding_id": b.id}))).ok
    cache = db.destinations
    for binding_id, (_, row) in list(cache._bindings.items()):
        cache._bindings[binding_id] = (0.0, row)  # the TTL has passed for every kept row
    async with db.write() as session:  # behind the cache's back: it drops nothing
        await session.execute(text("DELETE FROM channel_bindings WHERE id = :id"), {"id": bindings[4].id})
    cache._bindings[bindings[4].id] = (0.0, bindings[4])
    with statements(db) as seen:
        for b in bindings[:4]:
            assert (await deliver(OutboxItem(kind="test.relay", payload={"binding_id": b.id}))).ok
    assert len([s for s in seen if "FROM channel_bindings" in s]) == 1
    assert bindings[4].id not in cache._bindings
    outcome = await deliver(OutboxItem(kind="test.relay", payload={"binding_id": bindings[4].id}))
    assert not outcome.ok and outcome.permanent
