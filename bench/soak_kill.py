"""Benchmark 5 (issue 7): soak with SIGKILLs. Nothing acknowledged is lost or doubled.

    .venv/bin/python bench/soak_kill.py             # 200 msg/s for 5 min, 20 SIGKILLs
    .venv/bin/python bench/soak_kill.py --quick     # 100 msg/s for 45 s, 3 SIGKILLs, 400 visitors

PostgreSQL + Redis, two ``deskbell web`` processes and one ``deskbell
worker``, the fake Slack of the tests as a process; every widget is bound to
its own Slack channel through the REST API. Two visitors share a widget, so
both runs put 0.5 messages/s on each channel: half of what Slack (and
deskbell's pacing) allows, leaving room to catch up after a kill. Visitors (half on each web
process) send messages at the given total rate; each message is resent with
the same ``client_id`` until acknowledged. At random moments a random one of
the three processes gets SIGKILL and is started again at once; visitors whose
process died reconnect as widget.js does (to either web process) with
``resume_after`` and resend what was not acknowledged.

Checked afterwards: every acknowledged message is in the database and in the
fake Slack; no visitor got any message frame twice (live or replayed); and
for each kill, how long until messages sent just after it were acknowledged
and reached Slack ("delivery resumed", target <= 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import socket_worker  # noqa: E402
from _common import (  # noqa: E402
    HOST, Proc, Stack, Workers, fmt_ms, log, print_header, print_table, raise_fd_limit, split, stats_ms, today,
    verdict, widget_ws_url,
)
from relay_slack import SLACK_ENV, fake_posts, make_widgets, start_fake_slack  # noqa: E402

RESUME_TARGET_S = 10.0
WINDOW_S = 2.0  # messages first sent within this long after a kill tell when delivery resumed


async def restart(proc: Proc) -> float:
    """Start a killed process again; seconds until it serves (web) or runs (worker)."""
    started = time.monotonic()
    proc.start()
    if proc.port:
        await proc.wait_http("/healthz", timeout=60)
    else:
        await proc.wait_log("worker running", timeout=60)
    return time.monotonic() - started


async def killer(procs: list[Proc], kills: int, start_at: float, duration: float, rng: random.Random) -> list[dict[str, Any]]:
    """SIGKILL a random process at random moments (spread over the run), restarting each at once."""
    slots = sorted(start_at + duration * (i + rng.uniform(0.15, 0.85)) / kills for i in range(kills))
    done: list[dict[str, Any]] = []
    for at in slots:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        proc = rng.choice(procs)
        t = time.monotonic()
        proc.signal(signal.SIGKILL)
        await proc.wait_exit(10)
        took = await restart(proc)
        done.append({"t": t, "proc": proc.name, "restart_s": took})
        log(f"SIGKILL {proc.name}; running again after {took:.1f} s")
    return done


async def db_message_ids(stack: Stack, ids: list[int]) -> set[int]:
    import asyncpg

    conn = await asyncpg.connect(stack.db_url)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE id = ANY($1::bigint[])", ids)
        return {int(r["id"]) for r in rows}
    finally:
        await conn.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 msg/s for 45 s, 3 kills")
    parser.add_argument("--rate", type=float, help="messages per second in total (default 200; 100 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds (default 300; 45 with --quick)")
    parser.add_argument("--kills", type=int, help="SIGKILLs (default 20; 3 with --quick)")
    parser.add_argument("--sockets", type=int, help="visitors (default 800; 400 with --quick)")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for Slack to get everything")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rate = args.rate or (100.0 if args.quick else 200.0)
    duration = args.duration or (45.0 if args.quick else 300.0)
    kills = args.kills if args.kills is not None else (3 if args.quick else 20)
    sockets = args.sockets or (400 if args.quick else 800)
    widgets_n = max(1, sockets // 2)
    rng = random.Random(args.seed)
    raise_fd_limit()
    print_header(f"soak: {rate:.0f} msg/s for {duration:.0f} s, {kills} SIGKILLs, 2 web + 1 worker, PostgreSQL + Redis",
                 args.quick)
    stack = Stack("soak", db="postgres", redis=True)
    workers = Workers.start(args.workers, socket_worker)
    try:
        await stack.setup()
        slack = await start_fake_slack(stack, widgets_n)
        stack.extra_env.update({**SLACK_ENV, "SLACK_API_URL": f"http://{HOST}:{slack.port}/api/"})
        api_key = (await stack.cli("apikey", "create", "bench"))["key"]
        web_a = await stack.start_web("web", name="web-a")
        web_b = await stack.start_web("web", name="web-b")
        worker = stack.deskbell("worker")
        worker.start()
        await worker.wait_log("worker running")
        procs = [web_a, web_b, worker]
        widgets = await make_widgets(stack, web_a.port or 0, api_key, widgets_n)
        urls = [[widget_ws_url(p.port or 0, w["key"]) for p in order] for w in widgets
                for order in ((web_a, web_b), (web_b, web_a))]
        log(f"{widgets_n} widgets bound to {widgets_n} channels; {sockets} visitors; web-a pid {web_a.pid}, "
            f"web-b pid {web_b.pid}, worker pid {worker.pid}, database {stack.pg_db}")
        parts = len(workers.procs)
        offsets = [sum(split(sockets, parts)[:i]) for i in range(parts)]
        # socket i uses widget i//2 on web process i%2, and fails over to the other process
        each = [{"n": k, "offset": o} for k, o in zip(split(sockets, parts), offsets)]
        connected = sum(r["ok"] for r in await workers.ask({"cmd": "connect", "urls": urls, "concurrency": 20}, each=each))
        if connected < sockets:
            raise RuntimeError(f"only {connected} of {sockets} visitors connected")
        await workers.ask({"cmd": "arm_reconnect"})
        start_at = time.monotonic() + 1.0
        load, killed = await asyncio.gather(
            workers.ask({"cmd": "load", "rate": rate / sockets, "start_at": start_at, "duration": duration, "grace": 60},
                        timeout=duration + 180),
            killer(procs, kills, start_at, duration, rng),
        )
        records = [rec for r in load for rec in r["records"]]
        acked = [r for r in records if r[3] is not None]
        unacked = [r for r in records if r[3] is None]
        log(f"load done: {len(acked):,}/{len(records):,} acked; waiting for Slack (up to {args.drain:.0f} s)")

        # every acked message in Slack (the outbox may still be draining, or waiting out a dead worker's lease)
        arrived: dict[int, float] = {}
        copies: dict[int, int] = {}
        since = 0
        deadline = time.monotonic() + args.drain
        wanted = {r[0] for r in acked}
        while True:
            posts, since = await fake_posts(slack, since)
            for tag, t, _channel, _root in posts:
                copies[tag] = copies.get(tag, 0) + 1
                arrived.setdefault(tag, t)
            missing_slack = wanted - set(arrived)
            if not missing_slack or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        drained_at = max((arrived[t] for t in wanted if t in arrived), default=start_at)
        in_db = await db_message_ids(stack, [int(r[4]) for r in acked])
        missing_db = [r for r in acked if int(r[4]) not in in_db]
        seen = await workers.ask({"cmd": "seen_ids"})
        visitor_dups = sum(s["duplicates"] for s in seen)
        frames = sum(s["frames"] for s in seen)
        slack_dups = sum(1 for t in wanted if copies.get(t, 0) > 1)

        per_kill = []
        for k in killed:
            window = [r for r in records if r[2] is not None and k["t"] <= r[2] < k["t"] + WINDOW_S]
            ack_resume = max(((r[3] or float("inf")) - k["t"] for r in window), default=0.0)
            slack_resume = max((arrived.get(r[0], float("inf")) - k["t"] for r in window if r[3] is not None), default=0.0)
            per_kill.append({**k, "ack_resume_s": ack_resume, "slack_resume_s": slack_resume, "n": len(window)})
        ack = stats_ms([r[3] - r[2] for r in acked])
        delivery = stats_ms([arrived[r[0]] - r[2] for r in acked if r[0] in arrived])
        errors = [p.name for p in procs if p.errors()]
    finally:
        await workers.close()
        await stack.close()

    print()
    print_table(
        [(f"{i + 1}", k["proc"], f"{k['t'] - start_at:.0f} s", f"{k['restart_s']:.1f} s", str(k["n"]),
          f"{k['ack_resume_s']:.1f} s", f"{k['slack_resume_s']:.1f} s") for i, k in enumerate(per_kill)],
        ("kill", "process", "at", "back after", "msgs sent in next 2 s", "all of them acked after", "all in Slack after"),
    )
    print()
    worst_ack = max((k["ack_resume_s"] for k in per_kill), default=0.0)
    worst_slack = max((k["slack_resume_s"] for k in per_kill), default=0.0)
    print_table([
        ("messages sent / acked / never acked", f"{len(records):,} / {len(acked):,} / {len(unacked):,}"),
        ("acked rate", f"{len(acked) / duration:.0f}/s"),
        ("ack latency p50 / p99 / max", f"{fmt_ms(ack['p50'])} / {fmt_ms(ack['p99'])} / {fmt_ms(ack['max'])}"),
        ("acked but missing in the database", f"{len(missing_db):,}"),
        ("acked but missing in Slack", f"{len(missing_slack):,}"),
        ("posted to Slack more than once", f"{slack_dups:,}"),
        ("message frames at visitors / duplicates", f"{frames:,} / {visitor_dups:,}"),
        ("send -> Slack p50 / p99 / max", f"{fmt_ms(delivery['p50'])} / {fmt_ms(delivery['p99'])} / {fmt_ms(delivery['max'])}"),
        ("last Slack post after the load ended", f"{max(0.0, drained_at - (start_at + duration)):.1f} s"),
        ("worst kill: acks resumed / Slack resumed", f"{worst_ack:.1f} s / {worst_slack:.1f} s"),
        ("processes with errors in their logs", ", ".join(errors) or "none"),
    ], ("figure", "value"))
    met = (not missing_db and not missing_slack and visitor_dups == 0 and worst_ack <= RESUME_TARGET_S
           and worst_slack <= RESUME_TARGET_S and len(killed) == kills)
    print(f"\ntarget nothing acked lost, no duplicate to visitors, delivery resumed within {RESUME_TARGET_S:.0f} s "
          f"of each of {kills} kills: {verdict(met)} [{today()}]")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
