"""Several web processes behind a load balancer: events cross processes through Redis,
and the database stays the truth when Redis drops events."""

from __future__ import annotations

import os
import secrets

import pytest
import redis.asyncio as aioredis

from core.agents import create_agent
from core.services import Services
from core.widgets import create_widget

from bot.app import build_app
from bot.settings import Settings
from bot.wiring import build_services
from tests.widget_client import Visitor


@pytest.fixture
async def two_processes(db, db_url, redis_url, aiohttp_client):  # type: ignore[no-untyped-def]
    """Two independent service stacks (as two `deskbell web` processes) on one DB and one Redis."""
    await db.dispose()
    # A prefix of its own: counts of a test's rate limits do not reach the next test.
    settings = Settings(
        database_url=db_url, redis_url=redis_url, redis_prefix=f"test{os.getpid()}-{secrets.token_hex(4)}",
        secret_key="test-secret-key-0123456789",
    )
    stacks: list[Services] = [await build_services(settings, public_url="") for _ in range(2)]
    clients = [await aiohttp_client(build_app(svc)) for svc in stacks]
    yield stacks, clients
    for svc in stacks:
        await svc.bus.drain()  # type: ignore[attr-defined]
        await svc.close()


async def test_an_agent_reply_handled_by_one_process_reaches_a_visitor_on_the_other(two_processes):
    (a, b), (client_a, _client_b) = two_processes
    async with a.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com"})
    visitor = await Visitor.connect(client_a, widget.key)
    ack = await visitor.say("hello from process A", "c1")
    await b.chat.agent_message(ack["conversation_id"], "answered on process B", agent_id=agent.id)
    frame = await visitor.next("message")
    while frame["from"] != "agent":
        frame = await visitor.next("message")
    assert frame["text"] == "answered on process B" and frame["author"] == "Ana"


async def test_duty_changes_on_one_process_flip_widgets_on_the_other(two_processes):
    (a, b), (client_a, _client_b) = two_processes
    async with a.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com"})
    visitor = await Visitor.connect(client_a, widget.key)
    assert visitor.welcome["status"]["online"] is False
    await b.chat.set_duty(agent.id, True)
    status = await visitor.next("status")
    assert status["online"] is True and status["mode"] == "live"


async def test_events_missed_while_redis_was_away_are_recovered_from_the_database(two_processes, redis_url):
    (a, b), (client_a, _client_b) = two_processes
    async with a.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        agent = await create_agent(session, {"name": "Ana", "email": "ana@example.com"})
    visitor = await Visitor.connect(client_a, widget.key)
    ack = await visitor.say("hi", "c1")
    assert (await visitor.next("message"))["seq"] == 1
    # Process B's publish is lost: it goes to a channel nobody listens on.
    b.bus.channel = "deskbell:nowhere"  # type: ignore[attr-defined]
    await b.chat.agent_message(ack["conversation_id"], "lost doorbell", agent_id=agent.id)
    assert await visitor.quiet(0.3) == []
    # Process A's subscription drops and comes back: it resyncs from the database. Only
    # A's: killing every subscriber would make tests running beside this one resync too.
    host, port = a.bus._pubsub.connection._writer.get_extra_info("sockname")[:2]  # type: ignore[attr-defined]
    admin = aioredis.Redis.from_url(redis_url)
    try:
        assert await admin.client_kill_filter(addr=f"{host}:{port}") == 1
    finally:
        await admin.aclose()
    frame = await visitor.next("message", timeout=8)
    assert frame["text"] == "lost doorbell" and frame["seq"] == 2


async def test_rate_limits_hold_across_processes(two_processes):
    (a, b), _clients = two_processes
    key = f"test:{id(a)}"
    assert await a.rate_limiter.hit(key, 2, 60) is None
    assert await b.rate_limiter.hit(key, 2, 60) is None
    wait = await a.rate_limiter.hit(key, 2, 60)
    assert wait is not None and 0 < wait <= 60


async def test_a_line_under_two_limits_counts_under_both_or_neither(two_processes):
    """A visitor line is checked against its connection's and its IP's limits in one round trip."""
    (a, b), _clients = two_processes
    conn, ip = f"conn:{id(a)}", f"ip:{id(a)}"
    assert await a.rate_limiter.hit_all([(conn, 5, 60), (ip, 2, 60)]) is None
    assert await b.rate_limiter.hit_all([(ip, 2, 60)]) is None  # the IP's other connection, on process B
    wait = await a.rate_limiter.hit_all([(conn, 5, 60), (ip, 2, 60)])
    assert wait is not None and 0 < wait <= 60
    # The refused line was not counted under the connection's own limit either.
    assert await a.rate_limiter.hit_all([(conn, 2, 60)]) is None
    assert await a.rate_limiter.hit_all([(conn, 2, 60)]) is not None


async def test_a_sockets_limit_is_its_own_and_its_ip_limit_spans_processes(two_processes, redis_url):
    """Two sockets of one IP, one on each process: each may send 2 lines a minute, the IP 3."""
    (a, b), (client_a, client_b) = two_processes
    for svc in (a, b):
        svc.limits.messages_per_connection_per_minute = 2
        svc.limits.messages_per_ip_per_minute = 3
    async with a.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    on_a = await Visitor.connect(client_a, widget.key)
    on_b = await Visitor.connect(client_b, widget.key)
    assert (await on_a.say("a1", "a1"))["type"] == "ack"
    assert (await on_a.say("a2", "a2"))["type"] == "ack"
    refused = await on_a.say("a3", "a3")  # the connection's limit: not counted under the IP
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert (await on_b.say("b1", "b1"))["type"] == "ack"  # the IP's third line, on process B
    refused = await on_b.say("b2", "b2")  # the IP's limit, counted on process A's lines too
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    # Only the IP's count is shared. A connection's is kept by its socket: a key made from
    # its id() could be another process's socket's, or a closed socket's successor's.
    admin = aioredis.Redis.from_url(redis_url)
    try:
        prefix = a.rate_limiter.prefix  # type: ignore[attr-defined]
        keys = {key.decode() async for key in admin.scan_iter(f"{prefix}*")}
    finally:
        await admin.aclose()
    assert keys == {f"{prefix}ws-ip:127.0.0.1"}, keys


async def test_readyz_reports_redis(two_processes):
    _stacks, (client_a, _b) = two_processes
    body = await (await client_a.get("/readyz")).json()
    assert body["checks"]["redis"]["status"] == "ok" and body["checks"]["database"]["status"] == "ok"
