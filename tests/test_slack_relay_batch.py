"""Relays claimed together read their lines together: one query for the batch, not a
session per line, and each line still lands in its own chat's thread."""

from __future__ import annotations

from sqlalchemy import select

from core.models import ChannelBinding, OutboxItem
from tests.fakes.slack_harness import slack_rig
from tests.sql_statements import statements
from tests.test_deliveries_helpers import add_widget, drain
from tests.widget_client import Visitor


def _line_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith("SELECT") and "FROM messages JOIN thread_links" in s]


async def test_a_claimed_batch_of_replies_reads_its_lines_in_one_query(services, aiohttp_client, aiohttp_server):
    async with slack_rig(services, aiohttp_client, aiohttp_server, run_dispatcher=False) as rig:
        visitors: list[Visitor] = []
        for i in range(3):
            widget = await add_widget(services, name=f"Shop {i}")
            await rig.bind(widget.id, f"C0SHOP{i}", f"shop-{i}")
            visitor = await Visitor.connect(rig.client, widget.key)
            await visitor.say(f"hello from shop {i}", "c1")
            visitors.append(visitor)
        await drain(rig.dispatcher)  # each chat's thread is opened
        roots = {i: rig.fake.posts(f"C0SHOP{i}")[0]["ts"] for i in range(3)}

        # Two replies in open threads and one chat's first line, claimed in one batch.
        for i, visitor in enumerate(visitors[:2]):
            await visitor.say(f"second line for shop {i}", "c2")
        widget = await add_widget(services, name="Shop 3")
        await rig.bind(widget.id, "C0SHOP3", "shop-3")
        await (await Visitor.connect(rig.client, widget.key)).say("first line of shop 3", "c1")
        with statements(services.db) as seen:
            assert await rig.dispatcher.run_once() == 3

        reads = _line_reads(seen)
        assert len([s for s in reads if " IN (" in s or "= ANY (" in s]) == 1  # the batch
        assert len(reads) == 1  # the first line reads its full context, not a second light look
        for i in range(2):
            assert [m["text"] for m in rig.fake.thread(f"C0SHOP{i}", roots[i])][-1] == f"second line for shop {i}"
        [root] = rig.fake.posts("C0SHOP3")
        assert "first line of shop 3" in str(root)
        async with services.db.read() as session:
            statuses = (await session.execute(select(OutboxItem.status))).scalars().all()
        assert set(statuses) == {"done"}


async def test_a_line_read_at_the_claim_is_dropped_when_its_channel_goes_before_the_post(
    services, aiohttp_client, aiohttp_server
):
    async with slack_rig(services, aiohttp_client, aiohttp_server, run_dispatcher=False) as rig:
        widget = await add_widget(services)
        binding = await rig.bind(widget.id, "C0SHOP0")
        visitor = await Visitor.connect(rig.client, widget.key)
        await visitor.say("hello", "c1")
        await drain(rig.dispatcher)
        await visitor.say("again", "c2")
        [item] = await rig.dispatcher._claim(10)
        assert rig.adapter.relay._replies  # read with the claim
        async with services.db.write() as session:  # then the channel is unbound
            await session.delete(await session.get(ChannelBinding, binding.id))
        services.db.destinations.forget_binding(binding.id)
        await rig.dispatcher._deliver(item)
        assert rig.adapter.relay._replies == {}
        assert [m["text"] for m in rig.fake.posts("C0SHOP0")][-1] != "again"
        async with services.db.read() as session:
            row = await session.get(OutboxItem, item.id)
        assert row is not None and row.status == "dead" and "removed" in (row.last_error or "")


async def test_the_first_lines_of_chats_on_new_channels_are_read_with_their_claim(services, aiohttp_client, aiohttp_server):
    """When every visitor opens a chat at once, each first line needs its chat's full context
    for the thread's root, and each channel's binding: read for the claimed batch, three
    queries in all, not two per line."""
    async with slack_rig(services, aiohttp_client, aiohttp_server, run_dispatcher=False) as rig:
        for i in range(4):
            widget = await add_widget(services, name=f"Shop {i}")
            await rig.bind(widget.id, f"C0SHOP{i}", f"shop-{i}")
            await (await Visitor.connect(rig.client, widget.key)).say(f"first line of shop {i}", "c1")
        services.db.destinations.drop()  # the bindings are new to the worker
        with statements(services.db) as seen:
            assert await rig.dispatcher.run_once() == 4
        selects = [s for s in seen if s.startswith("SELECT")]
        contexts = [s for s in selects if "FROM messages JOIN conversations" in s]
        per_line = [s for s in selects if "FROM conversations JOIN messages" in s]
        bindings = [s for s in selects if "FROM channel_bindings" in s]
        assert (len(contexts), len(per_line), len(bindings)) == (1, 0, 1)
        for i in range(4):
            [root] = rig.fake.posts(f"C0SHOP{i}")
            assert f"first line of shop {i}" in str(root) and "Shop %d" % i in str(root)
        assert rig.adapter.relay._contexts == {}
        async with services.db.read() as session:
            statuses = (await session.execute(select(OutboxItem.status))).scalars().all()
        assert set(statuses) == {"done"}
