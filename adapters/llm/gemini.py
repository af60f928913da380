"""Google Gemini through ``google-genai``, the maintained successor of ``google-generativeai``."""

from __future__ import annotations

import asyncio

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from core.llm import LLMError, LLMReply, LLMRequest

DEFAULT_MODEL = "gemini-2.5-flash"


def _error(exc: Exception) -> LLMError:
    if isinstance(exc, genai_errors.APIError):
        code = exc.code
        if code == 429:
            return LLMError("rate_limited", "rate limited or out of quota", status=code)
        if code in (401, 403):
            return LLMError("auth", "the API key was refused", status=code)
        if code in (400, 404, 422):
            return LLMError("bad_request", f"the request was refused: {exc.message or exc}"[:300], status=code)
        if code in (408, 504):
            return LLMError("timeout", "the model did not answer in time", status=code)
        return LLMError("unavailable", f"Gemini answered {code}", status=code)
    if isinstance(exc, asyncio.TimeoutError) or "timeout" in type(exc).__name__.lower():
        return LLMError("timeout", "the model did not answer in time")
    return LLMError("unavailable", f"{type(exc).__name__}: {exc}"[:300])


class GeminiChat:
    """``POST {base_url}/{version}/models/{model}:generateContent`` with a system instruction.

    Retries are left to us (the SDK's implicit ones can sleep for seconds),
    and the timeout is the SDK's, in milliseconds.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        self.name = "gemini"
        self.model = model
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key=api_key, vertexai=False, http_options=options)

    async def complete(self, request: LLMRequest) -> LLMReply:
        model = request.model or self.model
        contents = [
            types.Content(role="user" if t.role == "user" else "model", parts=[types.Part(text=t.text)])
            for t in request.turns
        ]
        config = types.GenerateContentConfig(system_instruction=request.system, max_output_tokens=request.max_tokens)
        try:
            response = await self.client.aio.models.generate_content(model=model, contents=contents, config=config)
        except Exception as exc:  # the SDK raises its own errors and its HTTP stack's
            raise _error(exc) from exc
        try:
            text = response.text or ""
        except ValueError:
            text = ""
        if not text.strip():
            raise LLMError("empty", "the model returned no text")
        usage = response.usage_metadata
        finish = response.candidates[0].finish_reason if response.candidates else None
        return LLMReply(
            text=text,
            input_tokens=(usage.prompt_token_count or 0) if usage else 0,
            output_tokens=(usage.candidates_token_count or 0) if usage else 0,
            truncated=str(getattr(finish, "value", finish) or "") == "MAX_TOKENS",
            provider=self.name,
            model=model,
        )

    async def close(self) -> None:
        aclose = getattr(self.client.aio, "aclose", None)
        if aclose is not None:
            await aclose()
