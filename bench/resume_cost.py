"""CPU cost of one widget resume, measured in one process (server and client together).

    .venv/bin/python bench/resume_cost.py                      # SQLite, 1,000 visitors
    .venv/bin/python bench/resume_cost.py --db postgres --visitors 2000 --in-flight 5 50 500

Serial and in-process on purpose: on a shared 2-core machine the wall time of
a multi-process storm varies by tens of percent, while the CPU seconds this
process spends per resume (``time.process_time``, which includes the
aiosqlite threads) barely do. Every visitor first sends one message (so it
has a conversation, a token and a ``seq``); then all of them reconnect with
``hello`` {token, conversation_id, resume_after} as widget.js does, at most
``--in-flight`` at a time, and each waits for its ``welcome``. The same
client against a bare aiohttp handler that answers ``welcome`` at once gives
the floor (the WebSocket handshake itself, both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def _resume_all(session: aiohttp.ClientSession, url: str, hellos: list[dict[str, Any]], in_flight: int) -> list[dict[str, Any]]:
    slots = asyncio.Semaphore(in_flight)
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one(hello: dict[str, Any]) -> dict[str, Any]:
        async with slots:
            ws = await session.ws_connect(url, compress=0)
            sockets.append(ws)
            await ws.send_str(json.dumps(hello))
            return json.loads((await ws.receive(timeout=60)).data)

    welcomes = await asyncio.gather(*(one(h) for h in hellos))
    await asyncio.gather(*(ws.close() for ws in sockets))
    return list(welcomes)


async def _bare_app() -> web.Application:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        msg = await ws.receive()
        hello = json.loads(msg.data)
        await ws.send_str(json.dumps({"type": "welcome", "token": hello.get("token"),
                                      "conversation_id": hello.get("conversation_id")}))
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--visitors", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[5, 50, 500])
    parser.add_argument("--rounds", type=int, default=2, help="resume rounds per in-flight value (best is kept)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the last deskbell round into FILE")
    args = parser.parse_args()

    from core.models import Base
    from core.widgets import create_widget
    from bot.app import build_app
    from bot.settings import Settings
    from bot.wiring import build_services
    from core.services import Limits

    tmp = tempfile.mkdtemp(prefix="resume-cost-")
    dbname = f"bench_resume_{os.getpid()}"
    if args.db == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp}/resume.db"
    else:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        await admin.close()
        url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{dbname}"
    from core.db import Database

    setup = Database(url)
    async with setup.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await setup.dispose()

    limits = Limits(connections_per_ip=1_000_000, messages_per_connection_per_minute=100_000,
                    messages_per_ip_per_minute=100_000_000)
    svc = await build_services(Settings(database_url=url, secret_key="bench-secret-key-0123456789"), public_url="", limits=limits)
    rows: list[tuple[str, int, float, float]] = []
    try:
        async with svc.db.write() as session:
            widget = await create_widget(session, {"name": "Bench"})
        runner, port = await _start(build_app(svc))
        bare_runner, bare_port = await _start(await _bare_app())
        ws_url = f"http://127.0.0.1:{port}/widget/{widget.key}/ws"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            # Every visitor gets a conversation: connect, say one line, remember where it is.
            hellos: list[dict[str, Any]] = []
            slots = asyncio.Semaphore(20)

            async def first(i: int) -> None:
                async with slots:
                    ws = await session.ws_connect(ws_url, compress=0)
                    await ws.send_str(json.dumps({"type": "hello", "token": None}))
                    welcome = json.loads((await ws.receive(timeout=30)).data)
                    await ws.send_str(json.dumps({"type": "message", "client_id": f"c{i}", "text": "hello"}))
                    last_seq, conv = 0, None
                    while conv is None or last_seq < 1:
                        frame = json.loads((await ws.receive(timeout=30)).data)
                        if frame["type"] == "ack":
                            conv = frame["conversation_id"]
                        elif frame["type"] == "message":
                            last_seq = max(last_seq, frame["seq"])
                    await ws.close()
                    hellos.append({"type": "hello", "token": welcome["token"], "conversation_id": conv,
                                   "resume_after": last_seq, "page_url": "https://bench.example/", "language": "en"})

            started = time.monotonic()
            await asyncio.gather(*(first(i) for i in range(args.visitors)))
            print(f"{args.visitors:,} conversations in {time.monotonic() - started:.1f} s ({args.db})", flush=True)
            await asyncio.sleep(0.5)
            for target, url_ in (("deskbell", ws_url), ("bare aiohttp", f"http://127.0.0.1:{bare_port}/ws")):
                for in_flight in args.in_flight:
                    best: tuple[float, float] | None = None
                    for _ in range(args.rounds):
                        profiler = None
                        if args.profile and target == "deskbell" and in_flight == args.in_flight[-1]:
                            import cProfile

                            profiler = cProfile.Profile()
                            profiler.enable()
                        cpu0, wall0 = time.process_time(), time.monotonic()
                        welcomes = await _resume_all(session, url_, hellos, in_flight)
                        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                        if profiler is not None:
                            profiler.disable()
                            profiler.dump_stats(args.profile)
                        lost = sum(1 for h, w in zip(hellos, welcomes) if w.get("conversation_id") != h["conversation_id"])
                        if lost:
                            raise SystemExit(f"{lost} resumes lost their conversation")
                        await asyncio.sleep(0.3)  # let the closes finish before the next round
                        if best is None or cpu < best[0]:
                            best = (cpu, wall)
                    assert best is not None
                    rows.append((target, in_flight, best[0] / len(hellos) * 1000, len(hellos) / best[1]))
                    print(f"{target:13} in flight {in_flight:4}: {rows[-1][2]:.2f} ms CPU per resume "
                          f"(server + client), {rows[-1][3]:,.0f} resumes/s", flush=True)
        await runner.cleanup()
        await bare_runner.cleanup()
    finally:
        await svc.close()
        if args.db == "postgres":
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
