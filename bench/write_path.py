"""In-process timings of the visitor-side write path (benchmarks 3 and 4 of issue 7).

    .venv/bin/python bench/write_path.py                    # SQLite, 500 requests each
    .venv/bin/python bench/write_path.py --db postgres -n 1000
    .venv/bin/python bench/write_path.py --profile form     # cProfile of the serial form phase

No sockets between processes and no load generator competing for the CPU:
the whole application (``bot.app.build_app``) runs in this process and is
driven through aiohttp's test client (form) or ``ChatService.visitor_message``
(what a widget socket calls for each line, then acks). Four phases per
database, each on a fresh schema:

* form serial: one submission at a time, per-request latency;
* form concurrent: ``--concurrency`` in flight, submissions/s;
* chat serial: one visitor line at a time over ``--visitors`` open chats;
* chat concurrent: every visitor sends at once, ``--concurrency`` in flight.

The widget has a notification email and a bound Slack channel, so each form
submission commits the message + an email row + a channel post row, and each
visitor line commits the message + its relay row (as in the benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = f"bench_write_path_{os.getpid()}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
FORM = {"name": "Rita", "email": "rita@example.com", "message": "Please call me back", "page_url": "https://shop.example/"}


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _line(name: str, n: int, elapsed: float, lat: list[float]) -> str:
    return (
        f"{name:<22} {n:>6} in {elapsed:6.2f} s = {n / elapsed:7.0f}/s   "
        f"p50 {statistics.median(lat) * 1000:6.2f} ms  p99 {_pct(lat, 99) * 1000:7.2f} ms"
    )


async def _fresh(url: str) -> Any:
    from core.db import Database
    from core.models import Base

    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{PG_DB}"')
        finally:
            await conn.close()
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await db.dispose()


async def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        finally:
            await conn.close()


async def run(
    url: str,
    n: int,
    concurrency: int,
    visitors: int,
    profile: str | None,
    sort: str = "cumulative",
    redis: bool = False,
    open_rate: float = 0,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.app import build_app
    from bot.settings import Settings
    from bot.wiring import build_services
    from core.bindings import bind_channel
    from core.conversations import VisitorContext
    from core.services import Limits
    from core.widgets import create_widget

    await _fresh(url)
    limits = Limits(offline_per_ip_per_hour=10**9, messages_per_connection_per_minute=10**9, messages_per_ip_per_minute=10**9)
    settings = Settings(database_url=url, secret_key="bench-secret-key-0123456789")
    if redis:
        settings = dataclasses.replace(settings, redis_url=REDIS_URL, redis_prefix=f"bench-write-path-{os.getpid()}")
    svc = await build_services(settings, public_url="", limits=limits)
    async with svc.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "notify_emails": ["team@example.com"]})
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
    client = TestClient(TestServer(build_app(svc)))
    await client.start_server()
    try:
        url_form = f"/widget/{widget.key}/offline-messages"

        async def post() -> float:
            t0 = time.perf_counter()
            async with client.post(url_form, json=FORM) as resp:
                assert resp.status == 201, await resp.text()
                await resp.read()
            return time.perf_counter() - t0

        for _ in range(20):  # warm-up: imports, pools, caches
            await post()
        prof = cProfile.Profile() if profile == "form" else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        lat = [await post() for _ in range(n)]
        if prof:
            prof.disable()
        print(_line("form serial", n, time.perf_counter() - t0, lat))

        sem = asyncio.Semaphore(concurrency)

        async def bounded(fn: Any) -> float:
            async with sem:
                return await fn()

        t0 = time.perf_counter()
        lat = list(await asyncio.gather(*(bounded(post) for _ in range(n * 2))))
        print(_line(f"form x{concurrency}", n * 2, time.perf_counter() - t0, lat))

        if open_rate:
            import gc

            pauses: list[float] = []
            gc_t0 = [0.0]

            def on_gc(phase: str, info: dict[str, Any]) -> None:
                if phase == "start":
                    gc_t0[0] = time.perf_counter()
                else:
                    pauses.append(time.perf_counter() - gc_t0[0])

            gc.callbacks.append(on_gc)
            loop = asyncio.get_running_loop()
            start = loop.time() + 0.1
            total = int(open_rate * 5)

            async def scheduled(i: int) -> tuple[float, float]:
                at = start + i / open_rate
                await asyncio.sleep(max(0.0, at - loop.time()))
                async with client.post(url_form, json=FORM) as resp:
                    assert resp.status == 201
                    await resp.read()
                return loop.time() - at, at - start

            res = await asyncio.gather(*(scheduled(i) for i in range(total)))
            gc.callbacks.remove(on_gc)
            lat = [r[0] for r in res]
            print(_line(f"form open {open_rate:.0f}/s", total, 5.0, lat))
            worst = sorted(res, reverse=True)[:5]
            print("  worst at t=", [f"{t:.2f}s:{l * 1000:.0f}ms" for l, t in worst], f"gc pauses max {max(pauses, default=0) * 1000:.1f} ms")

        ctx = VisitorContext(page_url="https://shop.example/", name="Rita")
        counter = 0

        async def say(visitor: str) -> float:
            nonlocal counter
            counter += 1
            t0 = time.perf_counter()
            await svc.chat.visitor_message(widget, visitor, f"line {counter}", client_id=f"c{counter}", context=ctx)
            return time.perf_counter() - t0

        names = [f"v{i:05d}" for i in range(visitors)]
        t0 = time.perf_counter()
        lat = [await say(v) for v in names]  # opens each conversation
        print(_line("chat start serial", len(names), time.perf_counter() - t0, lat))
        prof2 = cProfile.Profile() if profile == "chat" else None
        if prof2:
            prof2.enable()
        t0 = time.perf_counter()
        lat = [await say(names[i % visitors]) for i in range(n)]
        if prof2:
            prof2.disable()
        print(_line("chat serial", n, time.perf_counter() - t0, lat))
        prof3 = cProfile.Profile() if profile == "chat-concurrent" else None
        if prof3:
            prof3.enable()
        t0 = time.perf_counter()
        lat = list(await asyncio.gather(*(bounded(lambda i=i: say(names[i % visitors])) for i in range(n * 2))))
        if prof3:
            prof3.disable()
        print(_line(f"chat x{concurrency}", n * 2, time.perf_counter() - t0, lat))
        await svc.bus.drain()  # type: ignore[attr-defined]
        group = getattr(svc.db, "group_commit", None)
        if group is not None:
            st = group.stats
            print(f"group commit: {st.writes} writes in {st.batches} batches (largest {st.largest_batch}, retried singly {st.retried_singly})")
        for p in (prof, prof2, prof3):
            if p:
                pstats.Stats(p).sort_stats(sort).print_stats(45)
    finally:
        await client.close()
        await svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("-n", type=int, default=500, help="requests per serial phase (concurrent phases do 2n)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--redis", action="store_true", help="Redis bus and rate limiter, as a multi-process deployment")
    parser.add_argument("--open-rate", type=float, default=500, help="open-loop form phase: submissions/s for 5 s (0: skip)")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key for --profile")
    parser.add_argument("--profile", choices=["form", "chat", "chat-concurrent"])
    args = parser.parse_args()
    for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db" if db == "sqlite" else PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + "/" + PG_DB
            print(f"-- {db}")
            try:
                asyncio.run(run(url, args.n, args.concurrency, args.visitors, args.profile, args.sort, args.redis, args.open_rate))
            finally:
                asyncio.run(_drop(url))


if __name__ == "__main__":
    main()
