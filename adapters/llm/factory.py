"""Building the configured providers from settings (see bot/settings.py for the variables)."""

from __future__ import annotations

from dataclasses import dataclass

from core.llm import LLMProvider, Providers

NAMES = ("openai", "anthropic", "gemini", "openai_compatible", "retrieval")


@dataclass(frozen=True)
class LLMSettings:
    provider: str = "retrieval"  # the default for widgets that do not choose
    model: str | None = None  # DESKBELL_AI_MODEL, for the default provider
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    timeout_s: float = 20.0

    @property
    def openai_name(self) -> str | None:
        """Which name the OpenAI SDK serves under: OpenAI itself, or a compatible server by base URL."""
        if self.openai_base_url and "api.openai.com" not in self.openai_base_url:
            return "openai_compatible"
        return "openai" if self.openai_api_key else None


def build_providers(settings: LLMSettings) -> Providers:
    """Every provider with credentials; widgets pick one by name, else get ``settings.provider``."""
    available: dict[str, LLMProvider] = {}

    def model_for(name: str, default: str) -> str:
        return settings.model if settings.model and name == settings.provider else default

    openai_name = settings.openai_name
    if openai_name is not None:
        from adapters.llm.openai_chat import DEFAULT_MODEL, OpenAIChat

        available[openai_name] = OpenAIChat(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=model_for(openai_name, DEFAULT_MODEL),
            name=openai_name,
            timeout_s=settings.timeout_s,
        )
    if settings.anthropic_api_key:
        from adapters.llm.anthropic_messages import DEFAULT_MODEL as CLAUDE, AnthropicMessages

        available["anthropic"] = AnthropicMessages(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            model=model_for("anthropic", CLAUDE),
            timeout_s=settings.timeout_s,
        )
    if settings.gemini_api_key:
        from adapters.llm.gemini import DEFAULT_MODEL as GEMINI, GeminiChat

        available["gemini"] = GeminiChat(
            api_key=settings.gemini_api_key,
            base_url=settings.gemini_base_url,
            model=model_for("gemini", GEMINI),
            timeout_s=settings.timeout_s,
        )
    default = settings.provider if settings.provider in available else None
    return Providers(available=available, default=default)
