"""The fake Slack of the tests (tests/fakes/slack_api.py) as a process, for benchmarks.

    python bench/_fake_slack.py PORT CHANNELS

Serves the Web API at ``http://127.0.0.1:PORT/api/`` with channels
``C0000``, ``C0001``... (the bot is a member of each) and records, for every
``chat.postMessage``, when it arrived (time.monotonic(), comparable across
processes on Linux) and the benchmark tags (``bm-<digits>``) in its text and
blocks. ``GET /_bench/posts?since=N`` returns the records from index N on.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402

from tests.fakes.slack_api import FakeSlack, fake_app  # noqa: E402

TAG = re.compile(r"bm-(\d+)")
RECORDS = web.AppKey("records", list)


def channel_id(i: int) -> str:
    return f"C{i:04d}"


@web.middleware
async def record_posts(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    if request.path == "/api/chat.postMessage" and response.status == 200:
        body = json.loads(response.body) if isinstance(response, web.Response) and response.body else {}
        if body.get("ok"):
            message = body.get("message", {})
            text = json.dumps([message.get("text"), message.get("blocks")])
            now = time.monotonic()
            for tag in set(TAG.findall(text)):  # a thread root quotes the first line twice
                request.app[RECORDS].append((int(tag), now, message.get("channel"), message.get("thread_ts") is None))
    return response


async def posts(request: web.Request) -> web.Response:
    since = int(request.query.get("since", "0"))
    records = request.app[RECORDS]
    return web.json_response({"posts": records[since:], "next": len(records)})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def main(port: int, channels: int) -> None:
    fake = FakeSlack()
    fake.base_url = f"http://127.0.0.1:{port}"
    for i in range(channels):
        fake.add_channel(channel_id(i), f"support-{i}", member=True)
    fake.calls = _Forgetful()  # type: ignore[assignment]  # a long run would keep every call
    app = fake_app(fake)
    app.middlewares.append(record_posts)
    app[RECORDS] = []
    app.router.add_get("/_bench/posts", posts)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"fake Slack on {fake.api_url} with {channels} channels", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


class _Forgetful(list):  # type: ignore[type-arg]
    """FakeSlack appends every call here; keep none (the benchmark reads its own records)."""

    def append(self, _item: Any) -> None:
        pass


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
