"""Pages a visitor line writes to SQLite's WAL, each line in a commit of its own.

    .venv/bin/python bench/wal_pages.py [--lines 400]

In `deskbell run` the COMMIT runs on the event loop's thread (core/sqlite_driver.py),
and what it costs is mostly the pages it writes: every table and index page the
transaction changed goes to the WAL whole. Unlike the load benchmarks this figure
does not move with the machine's speed, so it shows a schema or write-path change
at once. 200 visitors with a chat open (five lines each), a widget bound to one
Slack channel, then ``--lines`` lines one at a time, as a quiet site sends them.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.bindings import bind_channel  # noqa: E402
from core.chat import ChatService  # noqa: E402
from core.db import Database  # noqa: E402
from core.events import LocalBus  # noqa: E402
from core.models import Base  # noqa: E402
from core.widgets import create_widget  # noqa: E402

VISITORS = 200


async def measure(lines: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wal.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with db.write() as session:
                widget = await create_widget(session, {"name": "Shop"})
                await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
            chat = ChatService(db, LocalBus())
            for v in range(VISITORS):
                for i in range(5):
                    await chat.visitor_message(widget, f"v{v}", f"hello {i}", client_id=f"h{i}")
            raw = sqlite3.connect(path)
            try:
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty WAL: count from here
                for i in range(lines):
                    await chat.visitor_message(widget, f"v{i % VISITORS}", f"line {i}", client_id=f"l{i}")
                _busy, frames, _done = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                raw.close()
        finally:
            await db.dispose()
    return frames / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=400)
    args = parser.parse_args()
    print(f"WAL pages per visitor line (one line per commit, {args.lines} lines): {asyncio.run(measure(args.lines)):.2f}")


if __name__ == "__main__":
    main()
