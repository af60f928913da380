"""Visitor-side load: many widget WebSockets in one load-generator process.

:func:`socket_worker` is the target of :class:`_common.Workers`; the parent
sends commands (connect, status times, close...) and gets one answer each.
A :class:`WidgetSocket` speaks the widget protocol (README, "Widget WebSocket
protocol"): ``hello`` with the token, ``conversation_id`` and
``resume_after``; it records when frames arrive, which message ids it saw
(to count duplicates) and, when asked, reconnects with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections import Counter
from typing import Any

import aiohttp
from yarl import URL

from _common import Commands  # puts the repository on sys.path

from bot import gc_tuning


class WidgetSocket:
    def __init__(self, urls: list[Any], index: int) -> None:
        # Socket i takes urls[i % len(urls)]: a URL, or a list of URLs of the same widget on
        # several processes, the first to start with and the others to fail over to.
        choice = urls[index % len(urls)]
        self.urls: list[str] = list(choice) if isinstance(choice, list) else [choice]
        self.index = index
        self.url = self.urls[0]
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.token: str | None = None
        self.conversation_id: int | None = None
        self.last_seq = 0
        self.status_times: list[float] = []
        self.seen_ids: Counter[int] = Counter()  # message frame ids received (live or replayed)
        self.duplicates = 0
        self.duplicate_frames: list[dict[str, Any]] = []
        self.reconnects = 0
        self.closed_at: float | None = None
        self.resumed_at: float | None = None  # welcome (+ replay) done after a reconnect
        self.reconnect_frames = 0
        self.told_reconnect = False  # the server said reconnect (it is shutting down)
        self.close_code: int | None = None  # of the last socket, as a browser's CloseEvent.code
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.auto_reconnect = False
        self.want_open = True
        self.welcome_status: dict[str, Any] | None = None
        self.errors: Counter[str] = Counter()
        self.on_close: Any = None

    async def open(self, session: aiohttp.ClientSession, timeout: float = 60) -> None:
        ws = await session.ws_connect(
            self.url, autoping=True, compress=0, max_msg_size=4 * 1024 * 1024,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),  # type: ignore[call-arg]
        )
        hello = {"type": "hello", "token": self.token, "conversation_id": self.conversation_id,
                 "resume_after": self.last_seq, "page_url": "https://bench.example/page", "language": "en"}
        await ws.send_str(json.dumps(hello))
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            await ws.close()
            raise ConnectionError(f"no welcome: {msg.type.name} {msg.data!r}")
        welcome = json.loads(msg.data)
        if welcome.get("type") != "welcome":
            await ws.close()
            raise ConnectionError(f"expected welcome, got {welcome.get('type')}: {welcome}")
        self.token = welcome["token"]
        self.welcome_status = welcome.get("status")
        if welcome.get("conversation_id") != self.conversation_id:
            self.conversation_id = welcome.get("conversation_id")
            if self.conversation_id is None:
                self.last_seq = 0
        self.ws = ws
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.monotonic()
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "status":
                    self.status_times.append(now)
                elif kind == "message":
                    mid = int(frame["id"])
                    self.seen_ids[mid] += 1
                    if self.seen_ids[mid] > 1:
                        self.duplicates += 1
                        if len(self.duplicate_frames) < 5:
                            self.duplicate_frames.append(frame)
                    seq = int(frame.get("seq") or 0)
                    if seq > self.last_seq:
                        self.last_seq = seq
                elif kind == "ack":
                    fut = self.acks.pop(str(frame.get("client_id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    if frame.get("conversation_id"):
                        self.conversation_id = frame["conversation_id"]
                elif kind == "error":
                    self.errors[str(frame.get("code"))] += 1
                    fut = self.acks.pop(str(frame.get("client_id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif kind == "conversation":
                    self.conversation_id, self.last_seq = None, 0
                elif kind == "reconnect":
                    self.reconnect_frames += 1
                    self.told_reconnect = True
        except Exception as exc:  # noqa: BLE001 - a dropped socket is what we measure
            self.errors[type(exc).__name__] += 1
        finally:
            self.closed_at = time.monotonic()
            self.close_code = ws.close_code
            for fut in self.acks.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("socket closed"))
            self.acks.clear()
            if self.on_close is not None and self.want_open:
                self.on_close(self)

    async def send_message(self, text: str, client_id: str) -> dict[str, Any]:
        assert self.ws is not None
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[client_id] = fut
        await self.ws.send_str(json.dumps({"type": "message", "client_id": client_id, "text": text}))
        return await fut

    @property
    def is_open(self) -> bool:
        return self.ws is not None and not self.ws.closed and self.reader is not None and not self.reader.done()

    async def close(self) -> None:
        self.want_open = False
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader


async def _probe(url: str) -> None:
    """Raise ConnectionRefusedError while nothing listens, cheaply.

    A refused aiohttp ws_connect costs the load generator ~115 us of CPU, a
    raw connect ~25 us; 10,000 widgets retrying against a restarting server
    make tens of thousands of refused attempts, and on this 2-core machine
    that CPU would be taken from the server (a browser spends its own). When
    the port accepts, the probe costs the server one extra accept and close.
    """
    parsed = URL(url)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(probe, (parsed.host, parsed.port))
    finally:
        probe.close()


def _backoff(attempt: int) -> float:
    d = min(30.0, 0.5 * 2**attempt)
    return d / 2 + random.random() * d / 2


RESTART_WINDOW_S = 60.0  # widget.js: after a reconnect frame / close 1012 or 1001, retry at a steady pace this long


def _restart_retry() -> float:
    return 1.0 + random.random() * 2.0


class Pool:
    """The sockets of one load-generator process."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.sockets: list[WidgetSocket] = []
        self.reconnecting: set[asyncio.Task[None]] = set()
        self.storm_started: float | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))

    async def connect(self, urls: list[str], n: int, concurrency: int, offset: int = 0) -> dict[str, Any]:
        assert self.session is not None
        slots = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        times: list[float] = []
        new = [WidgetSocket(urls, offset + i) for i in range(n)]

        async def one(sock: WidgetSocket) -> None:
            async with slots:
                started = time.monotonic()
                for attempt in range(5):
                    try:
                        await sock.open(self.session)  # type: ignore[arg-type]
                        times.append(time.monotonic() - started)
                        self.sockets.append(sock)
                        return
                    except Exception as exc:  # noqa: BLE001
                        failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                        await asyncio.sleep(0.2 * (attempt + 1))

        started = time.monotonic()
        await asyncio.gather(*(one(s) for s in new))
        return {"ok": len(times), "failed": n - len(times), "failures": dict(failures.most_common(5)),
                "elapsed": time.monotonic() - started, "connect_times": times}

    def open_count(self) -> int:
        return sum(1 for s in self.sockets if s.is_open)

    def status_times(self, since: float) -> list[float | None]:
        """Per socket, the arrival of its first ``status`` frame after ``since`` (None if none)."""
        out: list[float | None] = []
        for s in self.sockets:
            first = next((t for t in s.status_times if t >= since), None)
            out.append(first)
        return out

    # -- reconnect storm ------------------------------------------------------
    def arm_reconnect(self) -> None:
        for s in self.sockets:
            s.auto_reconnect = True
            s.want_open = True
            s.resumed_at = None
            s.closed_at = None
            s.on_close = self._closed

    def _closed(self, sock: WidgetSocket) -> None:
        if not sock.auto_reconnect:
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(sock))
        self.reconnecting.add(task)
        task.add_done_callback(self.reconnecting.discard)

    async def _reconnect(self, sock: WidgetSocket) -> None:
        """As widget.js does: after a ``reconnect`` frame come back in 0.25-3 s; for the minute
        after a ``reconnect`` frame or a close with 1012/1001 (the server is restarting) retry
        every 1-3 s; otherwise (and after that minute) back off 0.5 s doubling up to 30 s,
        waiting 50-100 % of it."""
        attempt = tries = 0
        told = sock.told_reconnect
        restart_until = time.monotonic() + RESTART_WINDOW_S if told or sock.close_code in (1012, 1001) else 0.0
        if told:
            delay = 0.25 + random.random() * 2.75
        elif restart_until:
            delay = _restart_retry()
        else:
            delay = _backoff(attempt)
            attempt += 1
        while sock.want_open:
            await asyncio.sleep(delay)
            tries += 1
            sock.url = sock.urls[(sock.reconnects + tries) % len(sock.urls)]  # the other process first
            try:
                had = sock.conversation_id
                await _probe(sock.url)
                await sock.open(self.session)  # type: ignore[arg-type]
                if had is not None and sock.conversation_id != had:
                    sock.errors["conversation lost"] += 1
                sock.reconnects += 1
                sock.told_reconnect = False
                sock.resumed_at = time.monotonic()
                return
            except Exception as exc:  # noqa: BLE001
                detail = getattr(exc, "status", None) or str(exc)[:40]
                sock.errors[f"reconnect {type(exc).__name__} {detail}"] += 1
                if time.monotonic() < restart_until:
                    delay = _restart_retry()
                else:
                    delay = _backoff(attempt)
                    attempt += 1

    def storm_report(self) -> dict[str, Any]:
        closed = [s for s in self.sockets if s.closed_at is not None]
        resumed = [s.resumed_at for s in self.sockets if s.resumed_at is not None]
        errors: Counter[str] = Counter()
        for s in self.sockets:
            errors.update(s.errors)
        return {"sockets": len(self.sockets), "closed": len(closed), "resumed": len(resumed),
                "resumed_times": resumed, "open": self.open_count(),
                "reconnect_frames": sum(s.reconnect_frames for s in self.sockets),
                "duplicates": sum(s.duplicates for s in self.sockets), "errors": dict(errors.most_common(6))}

    async def close_all(self) -> None:
        for task in list(self.reconnecting):
            task.cancel()
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)
        self.sockets.clear()

    async def close(self) -> None:
        await self.close_all()
        if self.session is not None:
            await self.session.close()


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def send_load(sock: WidgetSocket, ids: Any, rate: float, start_at: float, end_at: float,
                    records: list[list[Any]], text: str, give_up_at: float) -> None:
    """Messages from one socket at ``rate``/s between ``start_at`` and ``end_at``, each resent
    with the same ``client_id`` until acknowledged (the socket may be reconnecting meanwhile).

    A record is [tag, scheduled, first sent, acked at, message id, error code, sends].
    """
    t = start_at + random.random() / rate
    while t < end_at:
        await _sleep_until(t)
        tag = next(ids)
        rec: list[Any] = [tag, t, None, None, None, None, 0]
        records.append(rec)
        while time.monotonic() < give_up_at:
            if not sock.is_open:
                await asyncio.sleep(0.05)
                continue
            if rec[2] is None:
                rec[2] = time.monotonic()
            rec[6] += 1
            try:
                ack = await asyncio.wait_for(sock.send_message(f"bm-{tag} {text}", f"c{tag}"), timeout=15)
            except (ConnectionError, asyncio.TimeoutError, RuntimeError):
                continue  # resend after the reconnect: the client_id makes it idempotent
            if ack.get("type") == "ack":
                rec[3], rec[4] = time.monotonic(), ack.get("id")
            else:
                rec[5] = ack.get("code")
            break
        t += 1 / rate


def _keep_collector_quiet() -> None:
    """The load generator's own garbage collections out of the measurements.

    A worker holds thousands of sockets whose objects a full collection walks:
    100-260 ms during which none of its sockets reads a frame, counted as the
    server's latency (all workers collect at about the same moment, their
    allocations being alike). After connecting, it does what deskbell does
    after start-up (bot/gc_tuning.py), for deskbell's runs and the baselines' alike.
    """
    gc_tuning.freeze_long_lived("load generator")
    gc_tuning.collect_less_often()


async def socket_worker(conn: Any, index: int) -> None:
    """Commands: connect, count, status_times, say, arm_reconnect, storm_report, close_all, exit."""
    commands = Commands(conn)
    pool = Pool()
    await pool.start()
    try:
        while True:
            cmd = await commands.next()
            what = cmd["cmd"]
            try:
                if what == "exit":
                    return
                if what == "connect":
                    connected = await pool.connect(cmd["urls"], cmd["n"], cmd.get("concurrency", 32), cmd.get("offset", 0))
                    _keep_collector_quiet()
                    commands.reply(connected)
                elif what == "count":
                    commands.reply({"open": pool.open_count(), "sockets": len(pool.sockets)})
                elif what == "status_times":
                    commands.reply({"times": pool.status_times(cmd["since"])})
                elif what == "say":  # one message on every socket (gives each a conversation)
                    slots = asyncio.Semaphore(cmd.get("concurrency", 16))

                    async def one(s: WidgetSocket, i: int) -> bool:
                        async with slots:
                            ack = await s.send_message(cmd["text"], f"w{index}-{i}-{cmd.get('tag', 'x')}")
                            return ack.get("type") == "ack"

                    results = await asyncio.gather(*(one(s, i) for i, s in enumerate(pool.sockets)), return_exceptions=True)
                    commands.reply({"acked": sum(1 for r in results if r is True),
                                    "failed": [repr(r)[:100] for r in results if r is not True][:5]})
                elif what == "load":  # messages from every socket; answers the records
                    counter = iter(range(index * 10_000_000 + 1, (index + 1) * 10_000_000))
                    records: list[list[Any]] = []
                    end_at = cmd["start_at"] + cmd["duration"]
                    give_up = end_at + cmd.get("grace", 30)
                    await asyncio.gather(*(send_load(s, counter, cmd["rate"], cmd["start_at"], end_at, records,
                                                     cmd.get("text", "hello from the benchmark"), give_up)
                                           for s in list(pool.sockets)))
                    commands.reply({"records": records, "duplicates": sum(s.duplicates for s in pool.sockets),
                                    "duplicate_frames": [f for s in pool.sockets for f in s.duplicate_frames][:5],
                                    "reconnects": sum(s.reconnects for s in pool.sockets)})
                elif what == "seen_ids":  # message ids each socket received, for duplicate checks
                    commands.reply({"duplicates": sum(s.duplicates for s in pool.sockets),
                                    "frames": sum(sum(s.seen_ids.values()) for s in pool.sockets)})
                elif what == "arm_reconnect":
                    pool.arm_reconnect()
                    commands.reply({"armed": len(pool.sockets)})
                elif what == "storm_report":
                    commands.reply(pool.storm_report())
                elif what == "close_all":
                    await pool.close_all()
                    commands.reply({"closed": True})
                else:
                    commands.reply({"error": f"unknown command {what}"})
            except Exception as exc:  # noqa: BLE001
                commands.reply({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        await pool.close()
