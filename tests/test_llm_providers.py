"""Each provider adapter, driven through its real SDK against a local fake of the provider's API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.llm.anthropic_messages import AnthropicMessages
from adapters.llm.factory import LLMSettings, build_providers
from adapters.llm.gemini import GeminiChat
from adapters.llm.openai_chat import OpenAIChat
from core.llm import ChatTurn, LLMError, LLMRequest
from core.retrieval import Passage
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.openai_api import FakeOpenAI

REQUEST = LLMRequest(
    system="Answer only from the passages.",
    turns=(ChatTurn("user", "Do you ship to Lisbon?"), ChatTurn("assistant", "Which product?"), ChatTurn("user", "Coffee")),
    max_tokens=50,
    passages=(Passage("1:0", 1, "Shipping", "We ship to Portugal."),),
)


async def _started(fake: FakeLLMServer) -> AsyncIterator[FakeLLMServer]:
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeLLMServer]:
    async for fake in _started(FakeOpenAI()):
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeLLMServer]:
    async for fake in _started(FakeAnthropic()):
        yield fake


@pytest.fixture
async def gemini_fake() -> AsyncIterator[FakeLLMServer]:
    async for fake in _started(FakeGemini()):
        yield fake


def _openai(fake: FakeLLMServer, timeout_s: float = 5.0) -> OpenAIChat:
    provider = OpenAIChat(api_key="sk-test", base_url=f"{fake.url}/v1", model="gpt-test", timeout_s=timeout_s, max_retries=0)
    return provider


def _anthropic(fake: FakeLLMServer, timeout_s: float = 5.0) -> AnthropicMessages:
    return AnthropicMessages(api_key="sk-ant-test", base_url=fake.url, model="claude-test", timeout_s=timeout_s, max_retries=0)


def _gemini(fake: FakeLLMServer, timeout_s: float = 5.0) -> GeminiChat:
    return GeminiChat(api_key="gm-test", base_url=fake.url, model="gemini-test", timeout_s=timeout_s)


PROVIDERS = {"openai": (FakeOpenAI, _openai), "anthropic": (FakeAnthropic, _anthropic), "gemini": (FakeGemini, _gemini)}


@pytest.fixture(params=list(PROVIDERS))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeLLMServer, Any]]:
    """Each provider's fake and its adapter (the real SDK inside) pointed at it."""
    fake_class, make = PROVIDERS[request.param]
    fake = fake_class()
    await fake.start()
    provider = make(fake)
    yield fake, provider
    await provider.close()
    await fake.close()


async def test_openai_sends_the_system_prompt_first_and_counts_tokens(openai_fake):
    openai_fake.answer("Yes, we ship coffee to Lisbon.")
    provider = _openai(openai_fake)
    reply = await provider.complete(REQUEST)
    await provider.close()
    assert reply.text == "Yes, we ship coffee to Lisbon." and reply.provider == "openai" and reply.model == "gpt-test"
    assert reply.output_tokens == 6 and reply.input_tokens > 0 and not reply.truncated
    [sent] = openai_fake.requests
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user", "assistant", "user"]
    assert sent.body["messages"][0]["content"] == REQUEST.system
    assert sent.body["max_completion_tokens"] == 50 and "max_tokens" not in sent.body


async def test_an_openai_compatible_server_needs_no_key_and_gets_max_tokens(openai_fake):
    provider = OpenAIChat(api_key=None, base_url=f"{openai_fake.url}/v1", model="llama3.1", name="openai_compatible", max_retries=0)
    reply = await provider.complete(REQUEST)
    await provider.close()
    assert reply.provider == "openai_compatible" and reply.model == "llama3.1"
    assert openai_fake.requests[0].body["max_tokens"] == 50


async def test_anthropic_puts_the_system_prompt_in_system(anthropic_fake):
    anthropic_fake.answer("We ship to Portugal.")
    provider = _anthropic(anthropic_fake)
    reply = await provider.complete(REQUEST)
    await provider.close()
    assert reply.text == "We ship to Portugal." and reply.output_tokens == 4 and reply.provider == "anthropic"
    [sent] = anthropic_fake.requests
    assert "sk-ant-test" in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    assert "anthropic-version" in sent.headers
    assert sent.body["system"] == REQUEST.system and sent.body["max_tokens"] == 50
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]


async def test_gemini_sends_a_system_instruction_and_model_turns(gemini_fake):
    gemini_fake.answer("We ship to Portugal.")
    provider = _gemini(gemini_fake)
    reply = await provider.complete(REQUEST)
    await provider.close()
    assert reply.text == "We ship to Portugal." and reply.output_tokens == 4 and reply.provider == "gemini"
    [sent] = gemini_fake.requests
    assert sent.path.endswith("/models/gemini-test:generateContent")
    assert sent.headers["x-goog-api-key"] == "gm-test"
    assert sent.body["systemInstruction"]["parts"][0]["text"] == REQUEST.system
    assert [c["role"] for c in sent.body["contents"]] == ["user", "model", "user"]
    assert sent.body["generationConfig"]["maxOutputTokens"] == 50


async def test_a_reply_cut_at_max_tokens_is_marked_truncated(pair):
    fake, provider = pair
    fake.answer(" ".join(["word"] * 80))
    reply = await provider.complete(REQUEST)
    assert reply.truncated and len(reply.text.split()) == 50


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (401, "auth"), (500, "unavailable"), (400, "bad_request")])
async def test_http_errors_become_llm_errors_the_assistant_can_act_on(pair, status, kind):
    fake, provider = pair
    fake.fail(status)
    with pytest.raises(LLMError) as caught:
        await provider.complete(REQUEST)
    assert caught.value.kind == kind


async def test_a_slow_provider_times_out(pair):
    fake, provider = pair
    fake.stall(3.0)
    slow = type(provider)  # same adapter with a short timeout
    fast = {OpenAIChat: _openai, AnthropicMessages: _anthropic, GeminiChat: _gemini}[slow](fake, timeout_s=0.3)
    with pytest.raises(LLMError) as caught:
        await fast.complete(REQUEST)
    await fast.close()
    assert caught.value.kind == "timeout"


async def test_an_empty_answer_is_an_error_not_a_blank_message(pair):
    fake, provider = pair
    fake.answer("")
    with pytest.raises(LLMError) as caught:
        await provider.complete(REQUEST)
    assert caught.value.kind == "empty"


async def test_an_unreachable_server_is_unavailable():
    provider = OpenAIChat(api_key="sk", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    with pytest.raises(LLMError) as caught:
        await provider.complete(REQUEST)
    await provider.close()
    assert caught.value.kind in {"unavailable", "timeout"}


async def test_the_factory_builds_what_has_credentials_and_picks_the_default():
    providers = build_providers(
        LLMSettings(provider="anthropic", model="claude-x", openai_api_key="sk", anthropic_api_key="a", gemini_api_key="g")
    )
    assert set(providers.available) == {"openai", "anthropic", "gemini"}
    assert providers.pick(None).name == "anthropic" and providers.pick(None).model == "claude-x"
    assert providers.pick("gemini").name == "gemini" and providers.pick("retrieval") is None
    assert providers.pick("openai_compatible").name == "anthropic"  # not configured: the default
    await providers.close()
    assert build_providers(LLMSettings()).pick(None) is None
    local = build_providers(LLMSettings(provider="openai_compatible", model="llama3.1", openai_base_url="http://localhost:11434/v1"))
    assert local.pick(None).name == "openai_compatible" and local.pick(None).model == "llama3.1"
    await local.close()
