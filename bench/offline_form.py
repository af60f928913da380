"""Benchmark 4 (issue 7): the offline form, ``POST /widget/{key}/offline-messages``.

    .venv/bin/python bench/offline_form.py                 # SQLite and PostgreSQL, 20 s phases
    .venv/bin/python bench/offline_form.py --quick         # 5 s phases
    .venv/bin/python bench/offline_form.py --db postgres   # one database only
    .venv/bin/python bench/offline_form.py --duration 10 --no-baselines   # one of an alternated pair

For each database: ``deskbell migrate`` + one ``deskbell web`` on a fresh
database, a widget with a notification email (so each submission commits the
message and its outbox row in one transaction, as a real widget does). Two
phases from load-generator processes:

1. max rate: closed loop (``--concurrency`` requests in flight) for the phase
   length; durable submissions/s = 201 answers / seconds, and the rows in the
   database are counted afterwards to prove each 201 was committed.
2. fixed 500/s: open loop, latency from each request's scheduled send time.

Targets: >= 1,000 durable submissions/s; p99 <= 50 ms at 500/s.
Baselines (same run, same load generator): a bare aiohttp handler that
parses the JSON and answers 201, and one that also does one SQLite INSERT +
COMMIT (WAL, synchronous=FULL) per request.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    HOST, Stack, Workers, fmt_ms, log, print_header, print_table, raise_fd_limit, split, start_baseline, stats_ms,
    today, verdict,
)
from _http_load import http_worker  # noqa: E402

TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
FIXED_RATE = 500.0


async def run_phases(workers: Workers, url: str, duration: float, concurrency: int) -> dict[str, Any]:
    parts = len(workers.procs)
    # warm-up: connections, caches, the first compiled queries
    await workers.ask({"cmd": "closed", "url": url, "concurrency": 4, "duration": 1.5})
    replies = await workers.ask({"cmd": "closed", "url": url, "duration": duration},
                                each=[{"concurrency": c} for c in split(concurrency, parts)])
    ok = sum(r["statuses"].get("201", 0) for r in replies)
    other = {k: v for r in replies for k, v in r["statuses"].items() if k != "201"}
    elapsed = max(r["elapsed"] for r in replies)
    max_lat = stats_ms([t for r in replies for t in r["latencies"]])
    log(f"max rate: {ok / elapsed:,.0f}/s ({ok:,} in {elapsed:.1f} s), p50 {fmt_ms(max_lat['p50'])}, "
        f"p99 {fmt_ms(max_lat['p99'])}{f', other answers {other}' if other else ''}")
    await asyncio.sleep(1)
    start_at = time.monotonic() + 0.5
    fixed = await workers.ask({"cmd": "open", "url": url, "duration": duration, "start_at": start_at},
                              each=[{"rate": FIXED_RATE / parts}] * parts)
    fixed_ok = sum(r["statuses"].get("201", 0) for r in fixed)
    fixed_other = {k: v for r in fixed for k, v in r["statuses"].items() if k != "201"}
    skipped = sum(r["skipped"] for r in fixed)
    lat = stats_ms([t for r in fixed for t in r["latencies"]])
    log(f"fixed {FIXED_RATE:.0f}/s: {fixed_ok:,} ok, p50 {fmt_ms(lat['p50'])}, p99 {fmt_ms(lat['p99'])}, "
        f"max {fmt_ms(lat['max'])}{f', other {fixed_other}' if fixed_other else ''}{f', skipped {skipped}' if skipped else ''}")
    log("p99 per 2 s at 500/s: " + ", ".join(fmt_ms(w["p99"]) for w in windows_ms(fixed, duration, 2.0)))
    return {"rate": ok / elapsed, "accepted": ok, "max_p50": max_lat["p50"], "max_p99": max_lat["p99"],
            "errors": sum(other.values()) + sum(fixed_other.values()) + skipped,
            "fixed_ok": fixed_ok, "fixed_sent": FIXED_RATE * duration, "p50": lat["p50"], "p99": lat["p99"], "max": lat["max"]}


def windows_ms(replies: list[dict[str, Any]], duration: float, width: float) -> list[dict[str, float]]:
    """Latency stats of each ``width`` seconds of an open-loop phase, by scheduled send time:
    a tail that comes in bursts (the disk stalling, a collection) shows in its windows."""
    spans: list[list[float]] = [[] for _ in range(max(1, math.ceil(duration / width)))]
    for reply in replies:
        for at, latency in zip(reply["sent_at"], reply["latencies"]):
            spans[min(len(spans) - 1, max(0, int(at // width)))].append(latency)
    return [stats_ms(span) for span in spans]


async def count_rows(stack: Stack) -> int:
    if stack.db_kind == "sqlite":
        path = stack.db_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM offline_messages").fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(stack.db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM offline_messages"))
    finally:
        await conn.close()


async def bench_deskbell(db: str, workers: Workers, duration: float, concurrency: int) -> dict[str, Any]:
    stack = Stack(f"form-{db}", db=db)
    try:
        await stack.setup()
        widget = await stack.cli("widget", "create", "Bench", "--settings", '{"notify_emails": ["team@example.com"]}')
        web = await stack.start_web("web")
        log(f"deskbell web on {db}: pid {web.pid} :{web.port}")
        url = f"http://{HOST}:{web.port}/widget/{widget['key']}/offline-messages"
        result = await run_phases(workers, url, duration, concurrency)
        await web.stop()
        rows = await count_rows(stack)
        # every 201 (warm-up included) must be a row; the fixed phase adds its own
        result["rows"] = rows
        errors = web.errors()
        if errors:
            log(f"server errors: {errors[:3]}")
        return result
    finally:
        await stack.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s phases")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=float, help="seconds per phase (default 20; 5 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight in the max-rate phase")
    parser.add_argument("--no-baselines", action="store_true", help="skip the bare aiohttp runs (for alternated pairs)")
    args = parser.parse_args()
    duration = args.duration or (5.0 if args.quick else 20.0)
    raise_fd_limit()
    print_header(f"offline form: max rate and p99 at {FIXED_RATE:.0f}/s, {duration:.0f} s phases", args.quick)
    workers = Workers.start(args.workers, http_worker)
    results: dict[str, dict[str, Any]] = {}
    try:
        for db in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            results[f"deskbell web, {db}"] = await bench_deskbell(db, workers, duration, args.concurrency)
        stack = Stack("form-baseline")
        baselines = () if args.no_baselines else (("http", "bare aiohttp, no DB"), ("http-sqlite", "bare aiohttp + 1 SQLite insert"))
        try:
            for mode, name in baselines:
                base = await start_baseline(stack, mode, str(stack.dir / f"{mode}.db"))
                log(f"baseline {mode}: pid {base.pid}")
                results[name] = await run_phases(workers, f"http://{HOST}:{base.port}/form", duration, args.concurrency)
                await base.stop()
        finally:
            await stack.close()
    finally:
        await workers.close()

    print()
    print_table(
        [(name, f"{r['rate']:,.0f}/s", fmt_ms(r["max_p99"]), f"{r['fixed_ok']:,}/{r['fixed_sent']:,.0f}",
          fmt_ms(r["p50"]), fmt_ms(r["p99"]), fmt_ms(r["max"]), str(r["errors"]),
          f"{r['rows']:,}" if "rows" in r else "-") for name, r in results.items()],
        ("server", "max rate", "p99 at max", "ok at 500/s", "p50 at 500/s", "p99 at 500/s", "max at 500/s", "errors", "rows in DB"),
    )
    met_all = True
    for name, r in results.items():
        if not name.startswith("deskbell"):
            continue
        durable = r["rows"] >= r["accepted"]
        met = r["rate"] >= TARGET_RATE and r["p99"] <= TARGET_P99_MS and durable and r["errors"] == 0
        met_all &= met
        print(f"{name}: >= {TARGET_RATE:,.0f}/s {verdict(r['rate'] >= TARGET_RATE)} ({r['rate']:,.0f}/s), "
              f"p99 <= {TARGET_P99_MS:.0f} ms at {FIXED_RATE:.0f}/s {verdict(r['p99'] <= TARGET_P99_MS)} ({fmt_ms(r['p99'])}), "
              f"every 201 stored: {'yes' if durable else 'NO'} [{today()}]")
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
