"""Anthropic's Messages API (Claude) through the official SDK."""

from __future__ import annotations

import anthropic

from core.llm import LLMError, LLMReply, LLMRequest

DEFAULT_MODEL = "claude-haiku-4-5"


def _error(exc: Exception) -> LLMError:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMError("timeout", "the model did not answer in time")
    if isinstance(exc, anthropic.RateLimitError):
        return LLMError("rate_limited", "rate limited", status=status)
    if isinstance(exc, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return LLMError("auth", "the API key was refused", status=status)
    if isinstance(exc, (anthropic.BadRequestError, anthropic.NotFoundError, anthropic.UnprocessableEntityError)):
        return LLMError("bad_request", f"the request was refused: {exc}"[:300], status=status)
    return LLMError("unavailable", f"{type(exc).__name__}: {exc}"[:300], status=status)


class AnthropicMessages:
    """``POST {base_url}/v1/messages``: the system prompt goes in ``system``, turns in ``messages``."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_s: float = 20.0,
        max_retries: int = 1,
    ) -> None:
        self.name = "anthropic"
        self.model = model
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def complete(self, request: LLMRequest) -> LLMReply:
        model = request.model or self.model
        try:
            response = await self.client.messages.create(
                model=model,
                max_tokens=request.max_tokens,
                system=request.system,
                messages=[{"role": t.role, "content": t.text} for t in request.turns],
            )
        except anthropic.AnthropicError as exc:
            raise _error(exc) from exc
        text = "".join(getattr(block, "text", "") for block in response.content if getattr(block, "type", "") == "text")
        if not text.strip():
            raise LLMError("empty", "the model returned no text")
        return LLMReply(
            text=text,
            input_tokens=response.usage.input_tokens if response.usage else 0,
            output_tokens=response.usage.output_tokens if response.usage else 0,
            truncated=response.stop_reason == "max_tokens",
            provider=self.name,
            model=response.model or model,
        )

    async def close(self) -> None:
        await self.client.close()
