"""A fake of the Gemini API's ``POST /{v1beta|v1}/models/{model}:generateContent``.

Point ``google-genai`` at ``url`` with ``HttpOptions(base_url=...)``.
Answers the documented GenerateContentResponse (``candidates[].content.parts[].text``,
``finishReason``, ``usageMetadata``) and Google's error body
(``{"error": {"code", "message", "status"}}``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.llm_server import FakeLLMServer

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE"}


class FakeGemini(FakeLLMServer):
    def routes(self, app: web.Application) -> None:
        # The SDK picks the API version (v1beta, or v1 in newer releases).
        app.router.add_post("/{version:v1|v1beta}/models/{model_action}", self.generate_content)

    def error_body(self, status: int) -> dict[str, Any]:
        return {"error": {"code": status, "message": f"fake error {status}", "status": STATUS.get(status, "UNKNOWN")}}

    async def generate_content(self, request: web.Request) -> web.Response:
        model, _, action = request.match_info["model_action"].partition(":")
        if action != "generateContent":
            return web.json_response(self.error_body(404), status=404)
        body, script = await self._record_and_script(request)
        if isinstance(script, web.Response):
            return script
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens") or 10_000
        words = script.text.split()
        text = " ".join(words[:limit])
        prompt = sum(len(p.get("text", "").split()) for c in body.get("contents", []) for p in c.get("parts", []))
        return web.json_response(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "MAX_TOKENS" if len(words) > limit else "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": len(text.split()),
                    "totalTokenCount": prompt + len(text.split()),
                },
                "modelVersion": model,
            }
        )
