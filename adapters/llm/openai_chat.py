"""OpenAI chat completions, and any OpenAI-compatible server (Ollama, vLLM, LM Studio) by base URL."""

from __future__ import annotations

from typing import Any

import openai

from core.llm import LLMError, LLMReply, LLMRequest

DEFAULT_MODEL = "gpt-4.1-mini"


def _error(exc: Exception) -> LLMError:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("timeout", "the model did not answer in time")
    if isinstance(exc, openai.RateLimitError):
        return LLMError("rate_limited", "rate limited or out of quota", status=status)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return LLMError("auth", "the API key was refused", status=status)
    if isinstance(exc, (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError)):
        return LLMError("bad_request", f"the request was refused: {exc}"[:300], status=status)
    return LLMError("unavailable", f"{type(exc).__name__}: {exc}"[:300], status=status)


class OpenAIChat:
    """``POST {base_url}/chat/completions`` through the official SDK.

    OpenAI's own models take ``max_completion_tokens``; self-hosted
    OpenAI-compatible servers know the older ``max_tokens``, and need no key.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        name: str = "openai",
        timeout_s: float = 20.0,
        max_retries: int = 1,
    ) -> None:
        self.name = name
        self.model = model
        self._token_param = "max_completion_tokens" if name == "openai" else "max_tokens"
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def complete(self, request: LLMRequest) -> LLMReply:
        messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}]
        messages += [{"role": t.role, "content": t.text} for t in request.turns]
        model = request.model or self.model
        try:
            response = await self.client.chat.completions.create(
                model=model, messages=messages, **{self._token_param: request.max_tokens}  # type: ignore[arg-type]
            )
        except openai.OpenAIError as exc:
            raise _error(exc) from exc
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        if not text.strip():
            raise LLMError("empty", "the model returned no text")
        usage = response.usage
        return LLMReply(
            text=text,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            truncated=choice is not None and choice.finish_reason == "length",
            provider=self.name,
            model=response.model or model,
        )

    async def close(self) -> None:
        await self.client.close()
