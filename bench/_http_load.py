"""HTTP load for the offline-form benchmark: closed loop (max rate) and open loop (fixed rate).

:func:`http_worker` is a :class:`_common.Workers` target. Open-loop latency
is measured from each request's *scheduled* send time, so a server (or load
generator) that falls behind shows it in the figures instead of hiding it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

from _common import Commands


def _body(index: int, n: int) -> bytes:
    return json.dumps({
        "name": f"Bench {index}",
        "email": f"bench{index}.{n}@example.com",
        "message": f"Hello, this is load generator {index}, submission {n}. Please call me back about my order.",
        "page_url": "https://shop.example/contact",
    }).encode()


async def closed_loop(session: aiohttp.ClientSession, index: int, url: str, concurrency: int, duration: float) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    counter = 0
    end = time.monotonic() + duration

    async def user() -> None:
        nonlocal counter
        while time.monotonic() < end:
            counter += 1
            body = _body(index, counter)
            started = time.monotonic()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
                    if resp.status == 201:
                        latencies.append(time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001
                statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.05)

    started = time.monotonic()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return {"statuses": dict(statuses), "latencies": latencies, "elapsed": time.monotonic() - started}


async def open_loop(session: aiohttp.ClientSession, index: int, url: str, rate: float, duration: float,
                    start_at: float, max_in_flight: int = 2000) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    sent_at: list[float] = []  # each latency's scheduled send, seconds into the phase
    interval = 1.0 / rate
    total = int(rate * duration)
    in_flight: set[asyncio.Task[None]] = set()
    skipped = 0

    async def one(n: int, scheduled: float) -> None:
        try:
            async with session.post(url, data=_body(index, n), headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                statuses[str(resp.status)] += 1
                if resp.status == 201:
                    latencies.append(time.monotonic() - scheduled)
                    sent_at.append(scheduled - start_at)
        except Exception as exc:  # noqa: BLE001
            statuses[type(exc).__name__] += 1

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    for n in range(total):
        scheduled = start_at + n * interval
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            skipped += 1
            continue
        task = asyncio.create_task(one(n + 1_000_000 * (index + 1), scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    return {"statuses": dict(statuses), "latencies": latencies, "sent_at": sent_at, "skipped": skipped, "sent": total - skipped}


async def http_worker(conn: Any, index: int) -> None:
    commands = Commands(conn)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        while True:
            cmd = await commands.next()
            try:
                if cmd["cmd"] == "exit":
                    return
                if cmd["cmd"] == "closed":
                    commands.reply(await closed_loop(session, index, cmd["url"], cmd["concurrency"], cmd["duration"]))
                elif cmd["cmd"] == "open":
                    commands.reply(await open_loop(session, index, cmd["url"], cmd["rate"], cmd["duration"], cmd["start_at"]))
                else:
                    commands.reply({"error": f"unknown command {cmd['cmd']}"})
            except Exception as exc:  # noqa: BLE001
                commands.reply({"error": f"{type(exc).__name__}: {exc}"})
