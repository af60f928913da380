"""The disk's share of a tail: commits at a fixed rate, with nothing else running.

    .venv/bin/python bench/commit_tail.py [--rate 300] [--duration 30] [--dir /path]
    .venv/bin/python bench/commit_tail.py --db postgres    # PostgreSQL's commits instead

Every acknowledged line and form submission waits for one COMMIT, and with
``synchronous=FULL`` (core/db.py) that COMMIT waits for the disk to confirm
the WAL write (fdatasync). A disk that now and then takes tens of
milliseconds to confirm holds up every request committing meanwhile, on
any server. This script measures that alone, in the database's directory:
one small transaction (two rows, as a form submission writes) at a fixed
rate on one thread, the WAL checkpointed in a second thread every second as
the service does, and prints the commit latency percentiles and the worst
stalls. Read it beside the load benchmarks: a p99 target of 20 ms cannot
be met by a server whose disk alone stalls 1 % of its commits longer.

With ``--db postgres`` the same transactions go to PostgreSQL (a scratch
database made through ``BENCH_PG_ADMIN_DSN`` and dropped at the end), over
asyncpg as the service sends them: BEGIN, two INSERTs, COMMIT, whose flush
PostgreSQL waits for (``synchronous_commit`` as the server has it).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import PG_ADMIN_DSN, fmt_ms, load_average, stats_ms, today  # noqa: E402

STALL_S = 0.020  # a commit longer than this alone breaks a 20 ms p99


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _checkpoints(path: Path, stop: threading.Event) -> None:
    conn = _connect(path)
    while not stop.wait(1.0):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    conn.close()


def measure(directory: Path, rate: float, duration: float) -> list[tuple[float, float]]:
    """(seconds into the run, commit seconds) of each commit."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "tail.db"
        conn = _connect(path)
        conn.execute("CREATE TABLE message (id INTEGER PRIMARY KEY, body TEXT, email TEXT)")
        conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload TEXT, due REAL)")
        conn.execute("CREATE INDEX ix_outbox_due ON outbox (due)")
        stop = threading.Event()
        checkpointer = threading.Thread(target=_checkpoints, args=(path, stop), daemon=True)
        checkpointer.start()
        samples = []
        start = time.perf_counter()
        try:
            for n in range(int(rate * duration)):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                conn.execute("BEGIN")
                conn.execute("INSERT INTO message (body, email) VALUES (?, ?)", ("x" * 300, f"v{n}@example.com"))
                conn.execute("INSERT INTO outbox (payload, due) VALUES (?, ?)", ("y" * 600, began + n % 97))
                conn.execute("COMMIT")
                samples.append((began - start, time.perf_counter() - began))
        finally:
            stop.set()
            checkpointer.join()
            conn.close()
        return samples


async def measure_postgres(rate: float, duration: float) -> list[tuple[float, float]]:
    """(seconds into the run, commit seconds) of each transaction, on a scratch database."""
    import asyncpg

    name = f"bench_commit_tail_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}")
        try:
            await conn.execute("CREATE TABLE message (id bigserial PRIMARY KEY, body text, email text)")
            await conn.execute("CREATE TABLE outbox (id bigserial PRIMARY KEY, payload text, due double precision)")
            await conn.execute("CREATE INDEX ix_outbox_due ON outbox (due)")
            samples = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n in range(int(rate * duration)):
                delay = start + n / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                began = loop.time()
                async with conn.transaction():
                    await conn.execute("INSERT INTO message (body, email) VALUES ($1, $2)", "x" * 300, f"v{n}@example.com")
                    await conn.execute("INSERT INTO outbox (payload, due) VALUES ($1, $2)", "y" * 600, began + n % 97)
                samples.append((began - start, loop.time() - began))
            return samples
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="commits per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--dir", type=Path, default=ROOT, help="directory on the disk to measure (default: this checkout)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    where = f"in {args.dir}" if args.db == "sqlite" else "on PostgreSQL"
    print(f"== {args.db} commit latency, {args.rate:.0f}/s for {args.duration:.0f} s, {where} ==")
    print(f"date {today()}, load average {load_average()}")
    if args.db == "sqlite":
        samples = measure(args.dir, args.rate, args.duration)
    else:
        samples = asyncio.run(measure_postgres(args.rate, args.duration))
    stats = stats_ms([s for _, s in samples])
    p999 = sorted(s for _, s in samples)[int(len(samples) * 0.999)] * 1000
    stalls = [(at, s) for at, s in samples if s > STALL_S]
    print(f"{len(samples):,} commits: p50 {fmt_ms(stats['p50'])}, p90 {fmt_ms(stats['p90'])}, p99 {fmt_ms(stats['p99'])}, "
          f"p99.9 {fmt_ms(p999)}, max {fmt_ms(stats['max'])}")
    print(f"commits over {STALL_S * 1000:.0f} ms: {len(stalls)} ({100 * len(stalls) / max(1, len(samples)):.2f} %)"
          + (": " + ", ".join(f"{fmt_ms(s * 1000)} at {at:.1f} s" for at, s in sorted(stalls, key=lambda x: -x[1])[:8]) if stalls else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
