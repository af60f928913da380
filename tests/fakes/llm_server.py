"""The shared skeleton of the fake language-model APIs: a local aiohttp server that
records every request and answers with a scripted text, an HTTP error or silence."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Script:
    """What the fake does with the next requests (``times`` of them, then back to normal)."""

    text: str = "Hello from the fake model."
    status: int | None = None  # answer this HTTP error instead
    delay_s: float = 0.0  # wait this long first (timeouts)
    times: int | None = None
    retry_after: str | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLMServer:
    """Subclasses add routes speaking one provider's real wire format."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.normal = Script()
        self.scripts: list[Script] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def answer(self, text: str) -> None:
        self.normal = Script(text=text)

    def fail(self, status: int, times: int | None = 1, retry_after: str | None = None) -> None:
        self.scripts.append(Script(status=status, times=times, retry_after=retry_after))

    def stall(self, seconds: float, times: int | None = 1) -> None:
        self.scripts.append(Script(delay_s=seconds, times=times, text=self.normal.text))

    def _next(self) -> Script:
        if self.scripts:
            script = self.scripts[0]
            if script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    self.scripts.pop(0)
            return script
        return self.normal

    async def _record_and_script(self, request: web.Request) -> tuple[dict[str, Any], Script | web.Response]:
        body = await request.json()
        self.requests.append(Recorded(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        script = self._next()
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status is not None:
            headers = {"Retry-After": script.retry_after} if script.retry_after else None
            return body, web.json_response(self.error_body(script.status), status=script.status, headers=headers)
        return body, script

    async def start(self) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # the bound port, for the SDK's base URL
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
