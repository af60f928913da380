"""Operators can see the worker: its heartbeat in /readyz and doctor, its metrics on its own port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import select

from bot.health import worker_check
from bot.metrics import worker_metrics_app
from bot.migrate import upgrade
from core.clock import utcnow
from core.db import Database
from core.dispatch import Dispatcher
from core.leader import Heartbeat, beat
from core.models import WorkerHeartbeat
from core.services import Services

DESKBELL = str(Path(sys.executable).parent / "deskbell")


async def test_readyz_is_degraded_but_serving_and_names_the_worker_when_no_worker_beats(client, services: Services):
    services.health_checks["worker"] = worker_check(services.db)
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 200 and body["status"] == "degraded"  # web stays in the load balancer
    assert body["checks"]["worker"]["status"] == "error"
    [warning] = [w for w in body["warnings"] if w["code"] == "worker_down"]
    assert "deskbell worker" in warning["message"]

    heartbeat = Heartbeat(services.db, "worker")
    await heartbeat.beat_once()
    body = await (await client.get("/readyz")).json()
    assert body["status"] == "ok" and body["checks"]["worker"]["status"] == "ok"
    assert not any(w["code"] == "worker_down" for w in body["warnings"])

    async with services.db.write() as session:  # the worker was killed two minutes ago
        row = await session.get(WorkerHeartbeat, heartbeat.row.id)
        assert row is not None
        row.last_seen_at = utcnow() - timedelta(minutes=2)
    body = await (await client.get("/readyz")).json()
    assert body["status"] == "degraded"
    assert f"pid {os.getpid()}" in body["checks"]["worker"]["error"] and "120 s" in body["checks"]["worker"]["error"]


async def test_a_heartbeat_is_kept_fresh_and_removed_when_the_worker_stops(db: Database):
    heartbeat = Heartbeat(db, "worker", every_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(heartbeat.run(stop))
    await asyncio.sleep(0.2)
    async with db.read() as session:
        [row] = (await session.execute(select(WorkerHeartbeat))).scalars()
    assert row.pid == os.getpid() and utcnow() - row.last_seen_at < timedelta(seconds=2)
    stop.set()
    await task
    async with db.read() as session:
        assert list((await session.execute(select(WorkerHeartbeat))).scalars()) == []


async def test_rows_of_workers_gone_for_a_day_are_forgotten(db: Database):
    old = WorkerHeartbeat(id="old", host="h", pid=1, mode="worker", started_at=utcnow() - timedelta(days=3))
    async with db.write() as session:
        await beat(session, old, utcnow() - timedelta(days=2))
    fresh = Heartbeat(db, "run")
    await fresh.beat_once()
    async with db.read() as session:
        assert [r.id for r in (await session.execute(select(WorkerHeartbeat))).scalars()] == [fresh.row.id]


async def test_the_worker_metrics_app_serves_prometheus_text_and_healthz(aiohttp_client, services: Services):
    Dispatcher(services.db, metrics=services.metrics)
    client = await aiohttp_client(worker_metrics_app(services))
    text = await (await client.get("/metrics")).text()
    assert "# TYPE deskbell_outbox_in_flight gauge" in text
    assert 'deskbell_outbox_rows{status="pending"} 0' in text
    assert "deskbell_workers_alive 0" in text
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_deskbell_worker_serves_metrics_on_its_port_and_beats(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    await asyncio.to_thread(upgrade, url)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "SLACK_", "TEAMS_", "SMTP_"))}
    env.update(DESKBELL_DATABASE_URL=url, DESKBELL_WORKER_METRICS_PORT=str(port), DESKBELL_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        DESKBELL, "worker", env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    db = Database(url)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        assert f"metrics on http://127.0.0.1:{port}/metrics" in line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
        assert "deskbell_outbox_in_flight 0" in text
        for _ in range(50):
            async with db.read() as session:
                rows = list((await session.execute(select(WorkerHeartbeat))).scalars())
            if rows:
                break
            await asyncio.sleep(0.1)
        assert [r.pid for r in rows] == [proc.pid]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
        async with db.read() as session:
            assert list((await session.execute(select(WorkerHeartbeat))).scalars()) == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await db.dispose()


def test_a_wrong_metrics_port_is_one_clear_line(tmp_path: Path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKBELL_")}
    env.update(DESKBELL_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", DESKBELL_WORKER_METRICS_PORT="http")
    result = subprocess.run([DESKBELL, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["deskbell: DESKBELL_WORKER_METRICS_PORT: 'http' is not a port number (1-65535)"]
