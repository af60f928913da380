"""Benchmark 3 (issue 7): visitor -> Slack relay at 300 messages/s for 60 s, committed before ack.

    .venv/bin/python bench/relay_slack.py                  # SQLite (deskbell run) and PostgreSQL (web + worker + Redis)
    .venv/bin/python bench/relay_slack.py --quick          # 10 s
    .venv/bin/python bench/relay_slack.py --db postgres --rate 300 --duration 60

The fake Slack of the tests runs as its own process (bench/_fake_slack.py);
``SLACK_API_URL`` points deskbell at it. Widgets are created and bound to
their own channel through the REST API (``POST /api/v1/widgets``, ``PUT
/api/v1/widgets/{id}/channels/slack``): Slack accepts about one post per
second per channel and deskbell paces itself to that, so 300 messages/s
need hundreds of channels (``--widgets``, default 2 visitors per widget,
0.25 messages/s each).

Measured: the ``ack`` latency seen by the visitor (the message is committed,
with its outbox row, before the ack), and whether and how fast every acked
message reached the fake Slack. Targets: ack p50 <= 5 ms, p99 <= 20 ms.
Baselines: a bare aiohttp WebSocket server that acks at once, and one that
INSERTs + COMMITs each message to SQLite (WAL, synchronous=FULL) first.
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
    HOST, Proc, Stack, Workers, cpu_seconds, fmt_ms, free_port, http_json, log, print_header, print_table,
    raise_fd_limit, split, start_baseline, stats_ms, today, verdict, widget_ws_url,
)

TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
SLACK_ENV = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": "test-signing-secret-8f3a"}
TEAM_ID = "T0DESK"


async def start_fake_slack(stack: Stack, channels: int) -> Proc:
    port = free_port()
    proc = stack.python("fake-slack", "_fake_slack.py", str(port), str(channels), port=port)
    proc.start()
    await proc.wait_http("/healthz")
    return proc


async def fake_posts(slack: Proc, since: int = 0) -> tuple[list[list[Any]], int]:
    _status, body = await http_json("GET", f"http://{HOST}:{slack.port}/_bench/posts?since={since}")
    return body["posts"], body["next"]


async def make_widgets(stack: Stack, port: int, api_key: str, n: int) -> list[dict[str, Any]]:
    """n widgets, each bound to its own channel of the fake Slack (C0000, C0001...)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"}
    widgets: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        slots = asyncio.Semaphore(8)

        async def one(i: int) -> dict[str, Any]:
            async with slots:
                async with session.post(f"http://{HOST}:{port}/api/v1/widgets", json={"name": f"Site {i}"}) as resp:
                    widget = await resp.json()
                    assert resp.status == 201, widget
                body = {"channel_id": f"C{i:04d}", "workspace_id": TEAM_ID, "channel_name": f"support-{i}"}
                async with session.put(f"http://{HOST}:{port}/api/v1/widgets/{widget['id']}/channels/slack", json=body) as resp:
                    bound = await resp.json()
                    assert resp.status in (200, 201), bound
                return widget

        widgets = list(await asyncio.gather(*(one(i) for i in range(n))))
    return widgets


async def drive(workers: Workers, urls: list[str], sockets: int, rate: float, duration: float) -> dict[str, Any]:
    parts = len(workers.procs)
    offsets = [sum(split(sockets, parts)[:i]) for i in range(parts)]
    results = await workers.ask({"cmd": "connect", "urls": urls, "concurrency": 20},
                                each=[{"n": k, "offset": o} for k, o in zip(split(sockets, parts), offsets)])
    connected = sum(r["ok"] for r in results)
    if connected < sockets:
        raise RuntimeError(f"only {connected} of {sockets} sockets connected: {[r['failures'] for r in results]}")
    start_at = time.monotonic() + 1.0
    replies = await workers.ask({"cmd": "load", "rate": rate / sockets, "start_at": start_at, "duration": duration,
                                 "grace": 30}, timeout=duration + 120)
    records = [rec for r in replies for rec in r["records"]]
    acked = [r for r in records if r[3] is not None]
    errors: dict[str, int] = {}
    for r in records:
        if r[3] is None:
            errors[r[5] or "no ack"] = errors.get(r[5] or "no ack", 0) + 1
    ack = stats_ms([r[3] - r[2] for r in acked])
    windows = []  # ack latency per 10 s of the load: does it drift as the tables grow?
    for w in range(int(duration // 10) or 1):
        part = [r[3] - r[2] for r in acked if w * 10 <= r[1] - start_at < (w + 1) * 10]
        if part:
            windows.append(stats_ms(part))
    lag = stats_ms([r[2] - r[1] for r in records if r[2] is not None])  # load generator behind schedule
    # Per 2 s of the first 10: each visitor's first line (the first 4 s at 1,200 visitors
    # and 300 msg/s) opens a chat and a thread, the costliest line there is.
    opening = [stats_ms([r[3] - r[2] for r in acked if w * 2 <= r[1] - start_at < (w + 1) * 2]) for w in range(5)]
    return {"sent": len(records), "acked": len(acked), "errors": errors, "ack": ack, "lag": lag,
            "rate": len(acked) / duration, "records": records, "windows": windows, "opening": opening,
            "duplicates": sum(r["duplicates"] for r in replies),
            "duplicate_frames": [f for r in replies for f in r["duplicate_frames"]][:5]}


async def await_slack(slack: Proc, records: list[list[Any]], timeout: float) -> dict[str, Any]:
    """Wait until every acked message is in the fake Slack (or timeout); delivery latencies."""
    acked = {r[0]: r for r in records if r[3] is not None}
    arrived: dict[int, float] = {}
    copies: dict[int, int] = {}
    since = 0
    started = time.monotonic()
    deadline = started + timeout
    while True:
        posts, since = await fake_posts(slack, since)
        for tag, t, _channel, _root in posts:
            copies[tag] = copies.get(tag, 0) + 1
            arrived.setdefault(tag, t)
        missing = [tag for tag in acked if tag not in arrived]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    delivery = stats_ms([arrived[tag] - rec[2] for tag, rec in acked.items() if tag in arrived])
    last = max((arrived[tag] for tag in acked if tag in arrived), default=started)
    return {"delivered": sum(1 for tag in acked if tag in arrived), "missing": len(missing),
            "duplicates": sum(1 for n in copies.values() if n > 1), "delivery": delivery,
            "drained_after_s": max(0.0, last - max(rec[1] for rec in acked.values())) if acked else 0.0}


async def bench_deskbell(variant: str, args: argparse.Namespace, workers: Workers) -> dict[str, Any]:
    """``variant``: sqlite (``deskbell run``), sqlite-split (``web`` + ``worker`` on one SQLite
    file, no Redis) or postgres (``web`` + ``worker`` + Redis)."""
    db = "postgres" if variant == "postgres" else "sqlite"
    widgets_n = args.widgets or max(1, args.sockets // 2)
    stack = Stack(f"relay-{variant}", db=db, redis=(db == "postgres"))
    try:
        await stack.setup()
        slack = await start_fake_slack(stack, widgets_n)
        stack.extra_env.update({**SLACK_ENV, "SLACK_API_URL": f"http://{HOST}:{slack.port}/api/"})
        api_key = (await stack.cli("apikey", "create", "bench"))["key"]
        if variant == "sqlite":
            web = await stack.start_web("run")  # web + worker in one process, the small-team default
            procs = [web]
        else:
            web = await stack.start_web("web")
            worker = stack.deskbell("worker")
            worker.start()
            await worker.wait_log("worker running")
            procs = [web, worker]
        log(f"{variant}: {' + '.join(f'{p.name} pid {p.pid}' for p in procs)}, fake Slack pid {slack.pid}")
        widgets = await make_widgets(stack, web.port or 0, api_key, widgets_n)
        urls = [widget_ws_url(web.port or 0, w["key"]) for w in widgets]
        log(f"{len(widgets)} widgets bound to {len(widgets)} channels; {args.sockets} visitors, "
            f"{args.rate:.0f} msg/s for {args.duration:.0f} s")
        cpu0 = {p.name: cpu_seconds(p.pid) for p in procs}
        wall0 = time.monotonic()
        result = await drive(workers, urls, args.sockets, args.rate, args.duration)
        wall = time.monotonic() - wall0  # connecting, the load, and waiting for the last acks
        cpu = {p.name: (cpu_seconds(p.pid) - cpu0[p.name]) / wall for p in procs}
        log(f"acked {result['acked']:,}/{result['sent']:,}, ack p50 {fmt_ms(result['ack']['p50'])}, "
            f"p99 {fmt_ms(result['ack']['p99'])}, max {fmt_ms(result['ack']['max'])}; CPU while driven ({wall:.0f} s) "
            + ", ".join(f"{k} {v * 100:.0f}%" for k, v in cpu.items()))
        log("ack p50/p99 per 10 s: " + ", ".join(f"{fmt_ms(w['p50'])}/{fmt_ms(w['p99'])}" for w in result["windows"]))
        log("ack p50/p99 per 2 s of the first 10 s: " + ", ".join(f"{fmt_ms(w['p50'])}/{fmt_ms(w['p99'])}" for w in result["opening"]))
        if result["duplicates"]:
            log(f"duplicate frames at visitors: {result['duplicates']}, e.g. {result['duplicate_frames'][:2]}")
        if result["errors"]:
            log(f"not acked: {result['errors']}")
        slack_result = await await_slack(slack, result["records"], timeout=args.drain)
        log(f"in Slack: {slack_result['delivered']:,}/{result['acked']:,}, delivery p50 "
            f"{fmt_ms(slack_result['delivery']['p50'])}, p99 {fmt_ms(slack_result['delivery']['p99'])}, "
            f"last one {slack_result['drained_after_s']:.1f} s after the load ended")
        for p in procs:
            errs = p.errors()
            if errs:
                log(f"{p.name} log errors: {errs[:3]}")
        await workers.ask({"cmd": "close_all"})
        return {**result, **slack_result, "cpu": cpu}
    finally:
        await stack.close()


async def bench_baseline(mode: str, args: argparse.Namespace, workers: Workers) -> dict[str, Any]:
    stack = Stack(f"relay-{mode}")
    try:
        base = await start_baseline(stack, mode, str(stack.dir / "baseline.db"))
        result = await drive(workers, [f"ws://{HOST}:{base.port}/ws"], args.sockets, args.rate, args.duration)
        log(f"baseline {mode}: acked {result['acked']:,}, p50 {fmt_ms(result['ack']['p50'])}, p99 {fmt_ms(result['ack']['p99'])}")
        await workers.ask({"cmd": "close_all"})
        return result
    finally:
        await stack.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60 s")
    parser.add_argument("--db", choices=("sqlite", "sqlite-split", "postgres", "both"), default="both",
                        help="both = sqlite and postgres; sqlite-split = web + worker processes on one SQLite file")
    parser.add_argument("--rate", type=float, default=300.0, help="messages per second, all visitors together")
    parser.add_argument("--duration", type=float, help="seconds of load (default 60; 10 with --quick)")
    parser.add_argument("--sockets", type=int, default=1200, help="visitors (each sends rate/sockets messages/s)")
    parser.add_argument("--widgets", type=int, help="widgets = Slack channels (default sockets/2)")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait for Slack to get everything")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-baselines", action="store_true", help="skip the bare aiohttp runs")
    args = parser.parse_args()
    args.duration = args.duration or (10.0 if args.quick else 60.0)
    raise_fd_limit()
    print_header(f"visitor -> fake Slack relay: {args.rate:.0f} msg/s for {args.duration:.0f} s", args.quick)
    workers = Workers.start(args.workers, socket_worker)
    results: dict[str, dict[str, Any]] = {}
    try:
        names = {"sqlite": "deskbell run, SQLite", "sqlite-split": "deskbell web + worker, SQLite",
                 "postgres": "deskbell web + worker, PostgreSQL + Redis"}
        for variant in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            results[names[variant]] = await bench_deskbell(variant, args, workers)
        if not args.no_baselines:
            results["bare aiohttp, ack at once"] = await bench_baseline("ws", args, workers)
            results["bare aiohttp, SQLite insert then ack"] = await bench_baseline("ws-sqlite", args, workers)
    finally:
        await workers.close()

    print()
    print_table(
        [(name, f"{r['acked']:,}/{r['sent']:,}", f"{r['rate']:.0f}/s", fmt_ms(r["ack"]["p50"]), fmt_ms(r["ack"]["p99"]),
          fmt_ms(r["ack"]["max"]), f"{r['delivered']:,}" if "delivered" in r else "-",
          fmt_ms(r["delivery"]["p50"]) if "delivery" in r else "-", fmt_ms(r["delivery"]["p99"]) if "delivery" in r else "-",
          str(r.get("duplicates", 0)), fmt_ms(r["lag"]["p99"])) for name, r in results.items()],
        ("server", "acked/sent", "acked rate", "ack p50", "ack p99", "ack max", "in Slack", "to Slack p50",
         "to Slack p99", "dups", "client lag p99"),
    )
    met_all = True
    for name, r in results.items():
        if not name.startswith("deskbell"):
            continue
        met = (r["ack"]["p50"] <= TARGET_P50_MS and r["ack"]["p99"] <= TARGET_P99_MS and r["acked"] == r["sent"]
               and r["missing"] == 0)
        met_all &= met
        print(f"{name}: ack p50 <= {TARGET_P50_MS:.0f} ms and p99 <= {TARGET_P99_MS:.0f} ms, every acked message in Slack: "
              f"{verdict(met)} (p50 {fmt_ms(r['ack']['p50'])}, p99 {fmt_ms(r['ack']['p99'])}, "
              f"{r['missing']} missing in Slack) [{today()}]")
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
