"""A fake of OpenAI's ``POST /v1/chat/completions`` (also what Ollama, vLLM and LM Studio serve).

Point the real ``openai`` SDK at ``{url}/v1``. Answers the documented
response shape (``choices[].message.content``, ``finish_reason``, ``usage``)
and OpenAI's error body (``{"error": {"message", "type", "code"}}``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fakes.llm_server import FakeLLMServer


class FakeOpenAI(FakeLLMServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat_completions)

    def error_body(self, status: int) -> dict[str, Any]:
        kinds = {401: "invalid_api_key", 429: "rate_limit_exceeded", 400: "invalid_request_error"}
        return {"error": {"message": f"fake error {status}", "type": kinds.get(status, "server_error"), "code": kinds.get(status)}}

    async def chat_completions(self, request: web.Request) -> web.Response:
        body, script = await self._record_and_script(request)
        if isinstance(script, web.Response):
            return script
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10_000
        words = script.text.split()
        truncated = len(words) > limit
        text = " ".join(words[:limit])
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": "length" if truncated else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_tokens + len(text.split()),
                },
            }
        )
