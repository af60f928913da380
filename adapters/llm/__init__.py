"""Language-model providers behind the port in core/llm.py: OpenAI, Anthropic, Gemini,
any OpenAI-compatible server, and the built-in retrieval-only assistant."""
