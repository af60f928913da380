"""Benchmark 6 (issue 7): 10,000 widgets reconnecting after the web process restarts.

    .venv/bin/python bench/reconnect_storm.py                 # 10,000 widgets, SQLite
    .venv/bin/python bench/reconnect_storm.py --quick         # 500 widgets
    .venv/bin/python bench/reconnect_storm.py --db postgres

``deskbell migrate`` + ``deskbell web`` on a fresh database. Every widget
connects, sends one message (so it has a conversation, a signed token and a
``seq`` to resume after), then the process gets SIGTERM (it tells widgets to
``reconnect`` and closes their sockets) and is started again on the same port
at once. Widgets reconnect as widget.js does (0.25-3 s after a ``reconnect``
frame, then, while the server is restarting, a new try every 1-3 s for up to
a minute before the usual backoff of 0.5 s doubling to 30 s with 50-100 %
jitter) and send ``hello`` with their token, ``conversation_id`` and
``resume_after``. Measured from the SIGTERM until each widget has its
``welcome`` back with the same conversation. Target: all within 15 s.
deskbell listens with its default backlog (DESKBELL_LISTEN_BACKLOG, 2048);
``--backlog 128`` shows aiohttp's default.

Baseline: the same storm against a bare aiohttp WebSocket server restarted
the same way. The CPU cost of one resume, measured serially in one process
(steadier than this on a shared machine): bench/resume_cost.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import socket_worker  # noqa: E402
from _common import (  # noqa: E402
    HOST, Proc, Stack, Workers, cpu_seconds, listen_overflows, log, percentile, print_header, print_table, raise_fd_limit, split, start_baseline,
    today, verdict, widget_ws_url,
)

TARGET_S = 15.0
GIVE_UP_S = 90.0


async def connect(workers: Workers, url: str, n: int, concurrency: int) -> int:
    parts = len(workers.procs)
    offsets = [sum(split(n, parts)[:i]) for i in range(parts)]
    results = await workers.ask({"cmd": "connect", "urls": [url], "concurrency": concurrency},
                                each=[{"n": k, "offset": o} for k, o in zip(split(n, parts), offsets)])
    failures = {k: v for r in results for k, v in r["failures"].items()}
    if failures:
        log(f"connect failures: {failures}")
    ok = sum(r["ok"] for r in results)
    log(f"{ok:,} widgets connected in {max(r['elapsed'] for r in results):.1f} s")
    return ok


async def storm(workers: Workers, proc: Proc, n: int) -> dict[str, Any]:
    await workers.ask({"cmd": "arm_reconnect"})
    overflows = listen_overflows()
    t0 = time.monotonic()
    proc.signal(15)  # SIGTERM
    code = await proc.wait_exit(20)
    down = time.monotonic() - t0
    if code is None:
        raise RuntimeError(f"{proc.name} did not exit within 20 s of SIGTERM")
    proc.start()
    await proc.wait_http("/healthz", timeout=60)
    up = time.monotonic() - t0
    cpu_at_start = cpu_seconds(proc.pid)  # start-up, apart from the resumes
    log(f"SIGTERM -> exit {code} in {down:.2f} s; serving again {up:.2f} s after the SIGTERM")
    deadline = t0 + GIVE_UP_S
    while True:
        reports = await workers.ask({"cmd": "storm_report"})
        resumed = sum(r["resumed"] for r in reports)
        if resumed >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    cpu = cpu_seconds(proc.pid) if proc.alive() else float("nan")
    overflows = listen_overflows() - overflows
    times = sorted(t - t0 for r in reports for t in r["resumed_times"])
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "exit_code": code, "shutdown_s": down, "restart_s": up, "resumed": len(times),
        "all_back_s": times[-1] if len(times) >= n else float("nan"),
        "p50_s": percentile(times, 50), "p99_s": percentile(times, 99),
        "reconnect_frames": sum(r["reconnect_frames"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports), "errors": errors,
        "lost": errors.get("conversation lost", 0), "server_cpu_s": cpu, "startup_cpu_s": cpu_at_start,
        "listen_overflows": overflows,
        "server_errors": sorted({line.split(" ERROR ", 1)[-1][:120] for line in proc.errors() if " ERROR " in line})[:5],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 widgets")
    parser.add_argument("--widgets", type=int)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--backlog", type=int, help="what-if: run deskbell web with this listen backlog "
                        "(DESKBELL_LISTEN_BACKLOG; deskbell's default is 2048, aiohttp's 128)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=25)
    args = parser.parse_args()
    n = args.widgets or (500 if args.quick else 10_000)
    raise_fd_limit()
    print_header(f"reconnect storm: {n:,} widgets, deskbell web restarted ({args.db}"
                 f"{f', what-if listen backlog {args.backlog}' if args.backlog else ''})", args.quick)
    stack = Stack("storm", db=args.db)
    workers = Workers.start(args.workers, socket_worker)
    results: dict[str, dict[str, Any]] = {}
    try:
        await stack.setup()
        widget = await stack.cli("widget", "create", "Bench")
        if args.backlog:  # what-if: another listen backlog
            web = await stack.start_web("web", DESKBELL_LISTEN_BACKLOG=str(args.backlog))
        else:
            web = await stack.start_web("web")
        log(f"deskbell web pid {web.pid} :{web.port}")
        ok = await connect(workers, widget_ws_url(web.port or 0, widget["key"]), n, args.concurrency)
        started = time.monotonic()
        said = await workers.ask({"cmd": "say", "text": "hello, anyone there?", "tag": "storm", "concurrency": 8})
        acked = sum(r["acked"] for r in said)
        log(f"{acked:,} conversations started in {time.monotonic() - started:.1f} s"
            + (f"; failures {[f for r in said for f in r['failed']][:3]}" if acked < ok else ""))
        await asyncio.sleep(1)
        results["deskbell web"] = {**await storm(workers, web, ok), "widgets": ok, "conversations": acked}
        await workers.ask({"cmd": "close_all"})
        await web.stop()

        base = await start_baseline(stack, "ws")
        ok = await connect(workers, f"ws://{HOST}:{base.port}/ws", n, args.concurrency)
        await asyncio.sleep(1)
        results["bare aiohttp"] = {**await storm(workers, base, ok), "widgets": ok, "conversations": 0}
        await workers.ask({"cmd": "close_all"})
    finally:
        await workers.close()
        await stack.close()

    print()
    print_table(
        [(name, f"{r['widgets']:,}", f"{r['conversations']:,}", f"{r['shutdown_s']:.2f} s", f"{r['restart_s']:.2f} s",
          f"{r['resumed']:,}", f"{r['p50_s']:.2f} s", f"{r['p99_s']:.2f} s", f"{r['all_back_s']:.2f} s",
          str(r["lost"]), str(r["duplicates"])) for name, r in results.items()],
        ("server", "widgets", "convs", "SIGTERM->exit", "serving again", "resumed", "p50 back", "p99 back",
         "all back", "conv lost", "dup frames"),
    )
    for name, r in results.items():
        resuming = r["server_cpu_s"] - r["startup_cpu_s"]
        print(f"{name}: server CPU from restart to all back {r['server_cpu_s']:.1f} s "
              f"({r['server_cpu_s'] / max(1, r['resumed']) * 1000:.2f} ms per resumed widget; after start-up "
              f"{resuming:.1f} s, {resuming / max(1, r['resumed']) * 1000:.2f} ms per resumed widget); "
              f"SYNs dropped on a full accept queue (machine-wide ListenOverflows): {r['listen_overflows']:,}")
        if r["server_errors"]:
            print(f"{name}: server log errors: {r['server_errors']}")
        other = {k: v for k, v in r["errors"].items() if k != "conversation lost"}
        if other:
            print(f"{name}: failed reconnect attempts / socket errors: {other}")
    ours = results["deskbell web"]
    met = ours["resumed"] == ours["widgets"] == n and ours["all_back_s"] <= TARGET_S and ours["lost"] == 0
    print(f"\ntarget all {n:,} back and resumed within {TARGET_S:.0f} s of the SIGTERM: {verdict(met)} "
          f"(all back after {ours['all_back_s']:.1f} s; bare aiohttp {results['bare aiohttp']['all_back_s']:.1f} s) [{today()}]")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
