"""A fake of Anthropic's ``POST /v1/messages``.

Point the real ``anthropic`` SDK at ``url`` (it appends ``/v1/messages``).
Answers the documented Message shape (``content[].text``, ``stop_reason``,
``usage.input_tokens/output_tokens``) and Anthropic's error body
(``{"type": "error", "error": {"type", "message"}}``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.llm_server import FakeLLMServer


class FakeAnthropic(FakeLLMServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    def error_body(self, status: int) -> dict[str, Any]:
        kinds = {401: "authentication_error", 429: "rate_limit_error", 400: "invalid_request_error", 529: "overloaded_error"}
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": f"fake error {status}"}}

    async def messages(self, request: web.Request) -> web.Response:
        body, script = await self._record_and_script(request)
        if isinstance(script, web.Response):
            return script
        words = script.text.split()
        truncated = len(words) > body["max_tokens"]
        text = " ".join(words[: body["max_tokens"]])
        input_tokens = len(str(body.get("system", "")).split()) + sum(len(str(m["content"]).split()) for m in body["messages"])
        return web.json_response(
            {
                "id": f"msg_{len(self.requests)}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if truncated else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(text.split())},
            }
        )
