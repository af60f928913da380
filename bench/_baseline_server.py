"""Bare aiohttp servers: the baselines the benchmarks compare deskbell with.

    python bench/_baseline_server.py MODE PORT [SQLITE_FILE]

Each does the same job as the deskbell endpoint it stands for, without our
logic: no database (unless the mode says sqlite), no routing, no auth.

ws            GET /ws: compress=False WebSocket; answers ``hello`` with a
              ``welcome``, ``message`` with an ``ack``, keeps the socket open.
              POST /broadcast sends one ``status`` frame to every socket.
              SIGTERM sends ``reconnect`` and closes every socket with 1012.
ws-sqlite     as ws, but each ``message`` is INSERTed and committed to SQLite
              (WAL, synchronous=FULL) before the ack.
http          POST /form: parse the JSON body, answer 201.
http-sqlite   POST /form: parse, one INSERT + commit to SQLite, answer 201.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time

from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", set)
DB = web.AppKey("db", object)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class SqliteWriter:
    """One connection in one thread, as deskbell's SQLite writer (aiosqlite) works."""

    def __init__(self, path: str) -> None:
        import aiosqlite

        self.path = path
        self._connect = aiosqlite.connect
        self.conn = None
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        self.conn = await self._connect(self.path, isolation_level=None)
        await self.conn.execute("PRAGMA journal_mode=WAL")
        await self.conn.execute("PRAGMA synchronous=FULL")
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL)"
        )

    async def insert(self, body: str) -> int:
        assert self.conn is not None
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            cur = await self.conn.execute("INSERT INTO rows (body, created) VALUES (?, ?)", (body, time.time()))
            await self.conn.execute("COMMIT")
            return int(cur.lastrowid or 0)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=16 * 1024)
    await ws.prepare(request)
    sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
    db: SqliteWriter | None = request.app.get(DB)  # type: ignore[assignment]
    sockets.add(ws)
    seq = 0
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "hello":
                await ws.send_str(json.dumps({
                    "type": "welcome", "token": frame.get("token") or "v_baseline.token",
                    "visitor_id": "v_baseline", "conversation_id": frame.get("conversation_id"),
                    "status": {"online": True, "reason": None, "mode": "live", "next_change_at": None},
                }))
            elif kind == "message":
                seq += 1
                row_id = await db.insert(msg.data) if db is not None else seq
                await ws.send_str(json.dumps({"type": "ack", "client_id": frame.get("client_id"), "id": row_id, "seq": seq}))
            elif kind == "ping":
                await ws.send_str('{"type":"pong"}')
    finally:
        sockets.discard(ws)
    return ws


async def broadcast(request: web.Request) -> web.Response:
    frame = json.dumps({"type": "status", "online": True, "reason": None, "mode": "live", "next_change_at": None})
    sockets = list(request.app[SOCKETS])
    for ws in sockets:
        if not ws.closed:
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                pass
    return web.json_response({"sent": len(sockets)})


async def count(request: web.Request) -> web.Response:
    return web.json_response({"sockets": len(request.app[SOCKETS])})


async def form(request: web.Request) -> web.Response:
    data = await request.json()
    db: SqliteWriter | None = request.app.get(DB)  # type: ignore[assignment]
    row_id = await db.insert(json.dumps(data)) if db is not None else 0
    return web.json_response({"id": row_id, "status": "new"}, status=201)


async def main(mode: str, port: int, sqlite_path: str | None) -> None:
    app = web.Application()
    app[SOCKETS] = set()
    if mode.endswith("sqlite"):
        db = SqliteWriter(sqlite_path or "baseline.db")
        await db.open()
        app[DB] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/count", count)
    app.router.add_post("/form", form)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"baseline {mode} listening on {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    started = time.monotonic()

    async def close(ws: web.WebSocketResponse) -> None:
        await ws.send_str('{"type":"reconnect"}')
        await ws.close(code=1012, message=b"server restarting")

    # as deskbell does on SIGTERM: stop listening, say reconnect, close with 1012 (all at once)
    await site.stop()
    sockets = list(app[SOCKETS])
    await asyncio.gather(*(close(ws) for ws in sockets), return_exceptions=True)
    closed = time.monotonic()
    await runner.cleanup()
    print(f"closed {len(sockets)} sockets in {closed - started:.2f} s, cleanup {time.monotonic() - closed:.2f} s", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
