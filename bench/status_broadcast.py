"""Benchmark 2: a status flip reaching 10,000 widget sockets across 2 web processes.

    .venv/bin/python bench/status_broadcast.py            # 10,000 sockets, 5 flips
    .venv/bin/python bench/status_broadcast.py --quick    # 500 sockets, 3 flips

A fresh PostgreSQL database, Redis (DESKBELL_REDIS_URL) and two ``deskbell
web`` processes; half of the sockets on each. An agent goes on duty (then
off, then on...) through the REST API (``PATCH /api/v1/agents/{id}`` with an
API key from ``deskbell apikey create --json``), alternately on process A and
B. Measured per socket: from just before the PATCH is sent to the arrival of
its ``status`` frame. Target: every socket gets it, p99 <= 500 ms.

Baseline: a bare aiohttp server holding the same number of sockets in one
process, broadcasting one frame on ``POST /broadcast``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import socket_worker  # noqa: E402
from _common import (  # noqa: E402
    HOST, Stack, Workers, fmt_ms, gc_pauses, http_json, log, print_header, print_table, raise_fd_limit, split, start_baseline,
    stats_ms, today, verdict, widget_ws_url,
)

TARGET_P99_MS = 500.0
WAIT_S = 15.0


async def connect(workers: Workers, urls: list[str], n: int, concurrency: int) -> int:
    parts = len(workers.procs)
    offsets = [sum(split(n, parts)[:i]) for i in range(parts)]
    results = await workers.ask({"cmd": "connect", "urls": urls, "concurrency": concurrency},
                                each=[{"n": k, "offset": o} for k, o in zip(split(n, parts), offsets)])
    failures = {k: v for r in results for k, v in r["failures"].items()}
    if failures:
        log(f"connect failures: {failures}")
    ok = sum(r["ok"] for r in results)
    log(f"{ok:,} sockets connected in {max(r['elapsed'] for r in results):.1f} s")
    return ok


async def collect(workers: Workers, since: float, n: int) -> list[float | None]:
    """Arrival times of the first status frame after ``since``, waiting until all came or WAIT_S passed."""
    deadline = time.monotonic() + WAIT_S
    while True:
        replies = await workers.ask({"cmd": "status_times", "since": since})
        times = [t for r in replies for t in r["times"]]
        if all(t is not None for t in times) and len(times) >= n or time.monotonic() > deadline:
            return times
        await asyncio.sleep(0.5)


def summarize(rounds: list[list[float | None]], starts: list[float]) -> dict[str, float]:
    latencies: list[float] = []
    missing = 0
    per_round_p99 = []
    for times, t0 in zip(rounds, starts):
        got = [t - t0 for t in times if t is not None]
        missing += sum(1 for t in times if t is None)
        latencies += got
        per_round_p99.append(stats_ms(got)["p99"])
    out = stats_ms(latencies)
    out["missing"] = float(missing)
    out["worst_round_p99"] = max(per_round_p99) if per_round_p99 else math.nan
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 sockets, 3 flips")
    parser.add_argument("--sockets", type=int)
    parser.add_argument("--flips", type=int)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=25)
    args = parser.parse_args()
    n = args.sockets or (500 if args.quick else 10_000)
    flips = args.flips or (3 if args.quick else 5)
    raise_fd_limit()
    print_header(f"status flip broadcast: {n:,} sockets on 2 deskbell web processes (PostgreSQL + Redis)", args.quick)

    stack = Stack("broadcast", db="postgres", redis=True)
    workers = Workers.start(args.workers, socket_worker)
    results: dict[str, dict[str, float]] = {}
    try:
        await stack.setup()
        widget = await stack.cli("widget", "create", "Bench")
        agent = await stack.cli("agent", "create", "Ana", "--email", "ana@example.com")
        api_key = (await stack.cli("apikey", "create", "bench"))["key"]
        a = await stack.start_web("web", name="web-a")
        b = await stack.start_web("web", name="web-b")
        log(f"web A pid {a.pid} :{a.port}, web B pid {b.pid} :{b.port}, database {stack.pg_db}")
        urls = [widget_ws_url(a.port or 0, widget["key"]), widget_ws_url(b.port or 0, widget["key"])]
        ok = await connect(workers, urls, n, args.concurrency)
        rounds: list[list[float | None]] = []
        starts: list[float] = []
        for i in range(flips):
            target = a if i % 2 == 0 else b
            on = i % 2 == 0
            await asyncio.sleep(1)
            t0 = time.monotonic()
            status, body = await http_json(
                "PATCH", f"http://{HOST}:{target.port}/api/v1/agents/{agent['id']}", {"on_duty": on},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            api_ms = (time.monotonic() - t0) * 1000
            if status != 200:
                raise RuntimeError(f"PATCH agent answered {status}: {body}")
            times = await collect(workers, t0, ok)
            rounds.append(times)
            starts.append(t0)
            s = stats_ms([t - t0 for t in times if t is not None])
            log(f"flip {i + 1} (on_duty={on}, via {target.name}, API {api_ms:.0f} ms): "
                f"{sum(t is not None for t in times):,}/{len(times):,} got it, p50 {fmt_ms(s['p50'])}, "
                f"p99 {fmt_ms(s['p99'])}, max {fmt_ms(s['max'])}")
        results["deskbell web x2 + Redis"] = {**summarize(rounds, starts), "sockets": float(ok)}
        for proc in (a, b):  # a collection during a flip stops that process's sends for its length
            log(f"{proc.name} garbage collections: {await gc_pauses(proc.port or 0)}")
        await workers.ask({"cmd": "close_all"})
        await a.stop()
        await b.stop()

        base = await start_baseline(stack, "ws")
        ok = await connect(workers, [f"ws://{HOST}:{base.port}/ws"], n, args.concurrency)
        rounds, starts = [], []
        for i in range(flips):
            await asyncio.sleep(1)
            t0 = time.monotonic()
            await http_json("POST", f"http://{HOST}:{base.port}/broadcast")
            times = await collect(workers, t0, ok)
            rounds.append(times)
            starts.append(t0)
        results["bare aiohttp, 1 process"] = {**summarize(rounds, starts), "sockets": float(ok)}
        await workers.ask({"cmd": "close_all"})
    finally:
        await workers.close()
        await stack.close()

    print()
    print_table(
        [(name, f"{r['sockets']:,.0f}", f"{r['n']:,.0f}", f"{r['missing']:,.0f}", fmt_ms(r["p50"]), fmt_ms(r["p90"]),
          fmt_ms(r["p99"]), fmt_ms(r["worst_round_p99"]), fmt_ms(r["max"])) for name, r in results.items()],
        ("server", "sockets", "frames", "missing", "p50", "p90", "p99", "worst flip p99", "max"),
    )
    ours = results["deskbell web x2 + Redis"]
    ok_all = ours["missing"] == 0 and ours["sockets"] == n
    met = ok_all and ours["p99"] <= TARGET_P99_MS
    print(f"\ntarget all delivered, p99 <= {TARGET_P99_MS:.0f} ms ({flips} flips pooled): {verdict(met)} "
          f"(p99 {fmt_ms(ours['p99'])}, missing {ours['missing']:.0f}; bare aiohttp p99 "
          f"{fmt_ms(results['bare aiohttp, 1 process']['p99'])}) [{today()}]")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
