"""Benchmark 1: memory per idle widget socket on one ``deskbell web`` process.

    .venv/bin/python bench/idle_sockets.py            # 10,000 sockets
    .venv/bin/python bench/idle_sockets.py --quick    # 500 sockets
    .venv/bin/python bench/idle_sockets.py --sockets 5000 --workers 4

``deskbell migrate`` + ``deskbell web`` on a fresh SQLite file; load-generator
processes open the sockets, each sends ``hello`` and waits. The figure is the
server's marginal RSS per socket: (VmRSS with warm-up + N sockets - VmRSS
with the warm-up sockets only) / N, read from /proc/PID/status. The same is
measured on a bare aiohttp WebSocket server (compress=False) in the same run.
Target: <= 25 KB per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import socket_worker  # noqa: E402
from _common import (  # noqa: E402
    HOST, Proc, Stack, Workers, log, percentile, print_header, print_table, raise_fd_limit, rss_kb, split,
    start_baseline, today, verdict, widget_ws_url,
)

TARGET_KB = 25.0
WARMUP = 200


async def measure(workers: Workers, proc: Proc, url: str, n: int, concurrency: int) -> dict[str, float]:
    parts = len(workers.procs)
    await workers.ask({"cmd": "connect", "urls": [url], "concurrency": concurrency},
                      each=[{"n": k} for k in split(WARMUP, parts)])
    await asyncio.sleep(2)
    before = rss_kb(proc.pid)
    started = time.monotonic()
    results = await workers.ask({"cmd": "connect", "urls": [url], "concurrency": concurrency},
                                each=[{"n": k, "offset": 10_000_000 * (i + 1)} for i, k in enumerate(split(n, parts))])
    elapsed = time.monotonic() - started
    ok = sum(r["ok"] for r in results)
    failures = {k: v for r in results for k, v in r["failures"].items()}
    await asyncio.sleep(3)  # let the server settle (first heartbeats are 30 s away)
    after = rss_kb(proc.pid)
    counts = await workers.ask({"cmd": "count"})
    still_open = sum(c["open"] for c in counts) - WARMUP
    connect_times = [t for r in results for t in r["connect_times"]]
    await workers.ask({"cmd": "close_all"})
    if failures:
        log(f"connect failures: {failures}")
    return {
        "sockets": ok, "open": still_open, "rss_before_kb": before, "rss_after_kb": after,
        "per_socket_kb": (after - before) / max(1, ok), "connect_rate": ok / elapsed,
        "connect_p99_ms": percentile(connect_times, 99) * 1000,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 sockets: check the script works")
    parser.add_argument("--sockets", type=int, help="how many idle sockets (default 10,000; 500 with --quick)")
    parser.add_argument("--workers", type=int, default=4, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=25, help="connects in flight per load generator")
    args = parser.parse_args()
    n = args.sockets or (500 if args.quick else 10_000)
    raise_fd_limit()
    print_header(f"idle widget sockets: {n:,} on one deskbell web process", args.quick)

    stack = Stack("idle", db="sqlite")
    workers = Workers.start(args.workers, socket_worker)
    rows: dict[str, dict[str, float]] = {}
    try:
        await stack.setup()
        widget = await stack.cli("widget", "create", "Bench")
        web = await stack.start_web("web")
        log(f"deskbell web pid {web.pid} on {HOST}:{web.port}, RSS {rss_kb(web.pid) / 1024:.1f} MiB at start")
        rows["deskbell web"] = await measure(workers, web, widget_ws_url(web.port or 0, widget["key"]), n, args.concurrency)
        await web.stop()

        base = await start_baseline(stack, "ws")
        log(f"baseline pid {base.pid}, RSS {rss_kb(base.pid) / 1024:.1f} MiB at start")
        rows["bare aiohttp (compress=False)"] = await measure(workers, base, f"ws://{HOST}:{base.port}/ws", n, args.concurrency)
        await base.stop()
    finally:
        await workers.close()
        await stack.close()

    print()
    print_table(
        [
            (name, f"{r['sockets']:,.0f}", f"{r['open']:,.0f}", f"{r['rss_before_kb'] / 1024:.1f} MiB",
             f"{r['rss_after_kb'] / 1024:.1f} MiB", f"{r['per_socket_kb']:.1f} KB", f"{r['connect_rate']:,.0f}/s",
             f"{r['connect_p99_ms']:.0f} ms")
            for name, r in rows.items()
        ],
        ("server", "sockets", "still open", "RSS before", "RSS after", "RSS/socket", "connects", "connect p99"),
    )
    ours = rows["deskbell web"]
    ok = ours["per_socket_kb"] <= TARGET_KB and ours["sockets"] == n and ours["open"] == n
    print(f"\ntarget <= {TARGET_KB:.0f} KB/socket with all {n:,} open: {verdict(ok)} "
          f"({ours['per_socket_kb']:.1f} KB; bare aiohttp {rows['bare aiohttp (compress=False)']['per_socket_kb']:.1f} KB) [{today()}]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
