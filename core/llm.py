"""The language-model port: what the assistant asks of ChatGPT, Claude, Gemini or a local model.

One small request/reply shape for every provider, so the answer policy and
its tests never see an SDK. Adapters live in ``adapters/llm/`` and translate
their SDK's failures into :class:`LLMError` kinds the assistant can act on
(fall back to the retrieval-only answer, or offer the form).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.retrieval import Passage

# The model answers exactly this when the passages do not contain the answer;
# the assistant then says it does not know instead of relaying a guess.
NO_ANSWER = "NO_ANSWER"

ErrorKind = Literal["timeout", "rate_limited", "unavailable", "auth", "bad_request", "empty"]


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class LLMRequest:
    system: str
    turns: tuple[ChatTurn, ...]  # oldest first, ends with the visitor's question
    max_tokens: int
    model: str | None = None  # None: the provider's configured model
    passages: tuple[Passage, ...] = ()  # what ``system`` quotes, for providers that answer without a model


@dataclass(frozen=True)
class LLMReply:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    truncated: bool = False  # stopped at max_tokens
    provider: str = ""
    model: str = ""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def abstained(self) -> bool:
        return not self.text.strip() or NO_ANSWER in self.text


class LLMError(Exception):
    """A provider call failed; ``kind`` says whether waiting or fixing configuration would help."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class LLMProvider(Protocol):
    name: str  # openai | anthropic | gemini | openai_compatible | retrieval
    model: str

    async def complete(self, request: LLMRequest) -> LLMReply: ...

    async def close(self) -> None: ...


@dataclass
class Providers:
    """The configured providers by name, and which one a widget gets by default.

    An empty set means every widget uses the built-in retrieval-only assistant.
    """

    available: dict[str, LLMProvider] = field(default_factory=dict)
    default: str | None = None

    def pick(self, name: str | None) -> LLMProvider | None:
        """The widget's choice when configured, else the default; None means retrieval-only."""
        if name == "retrieval":
            return None
        if name and name in self.available:
            return self.available[name]
        return self.available.get(self.default) if self.default else None

    async def close(self) -> None:
        for provider in self.available.values():
            await provider.close()
