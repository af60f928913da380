"""AI provider configuration: no key means retrieval-only, and a wrong value names its variable."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, Settings


def _ai(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return Settings.from_env(env, dotenv=None).ai


def test_without_any_key_the_retrieval_only_assistant_answers():
    ai = _ai({})
    assert ai.provider == "retrieval" and ai.timeout_s == 20.0


@pytest.mark.parametrize(
    ("env", "provider"),
    [
        ({"OPENAI_API_KEY": "sk-x"}, "openai"),
        ({"ANTHROPIC_API_KEY": "a"}, "anthropic"),
        ({"GEMINI_API_KEY": "g"}, "gemini"),
        ({"OPENAI_BASE_URL": "http://localhost:11434/v1", "DESKBELL_AI_MODEL": "llama3.1"}, "openai_compatible"),
        ({"OPENAI_API_KEY": "sk-x", "GEMINI_API_KEY": "g", "DESKBELL_AI_PROVIDER": "gemini"}, "gemini"),
        ({"OPENAI_API_KEY": "sk-x", "DESKBELL_AI_PROVIDER": "retrieval"}, "retrieval"),
        ({"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "https://api.openai.com/v1"}, "openai"),
    ],
)
def test_the_provider_follows_the_configured_keys(env, provider):
    assert _ai(env).provider == provider


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"DESKBELL_AI_PROVIDER": "chatgpt"}, "DESKBELL_AI_PROVIDER"),
        ({"DESKBELL_AI_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"DESKBELL_AI_PROVIDER": "anthropic"}, "ANTHROPIC_API_KEY"),
        ({"DESKBELL_AI_PROVIDER": "gemini"}, "GEMINI_API_KEY"),
        ({"DESKBELL_AI_PROVIDER": "openai_compatible"}, "OPENAI_BASE_URL"),
        ({"OPENAI_BASE_URL": "http://localhost:11434/v1"}, "DESKBELL_AI_MODEL"),
        ({"OPENAI_BASE_URL": "localhost:11434"}, "OPENAI_BASE_URL"),
        ({"ANTHROPIC_BASE_URL": "ftp://proxy"}, "ANTHROPIC_BASE_URL"),
        ({"GEMINI_BASE_URL": "nope"}, "GEMINI_BASE_URL"),
        ({"DESKBELL_AI_MODEL": "gpt 4"}, "DESKBELL_AI_MODEL"),
        ({"DESKBELL_AI_TIMEOUT": "soon"}, "DESKBELL_AI_TIMEOUT"),
        ({"DESKBELL_AI_TIMEOUT": "500"}, "DESKBELL_AI_TIMEOUT"),
    ],
)
def test_a_wrong_ai_value_names_the_variable(env, name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, dotenv=None)
    assert str(caught.value).startswith(name + ":") and "\n" not in str(caught.value)
