"""Sentence embeddings for knowledge-base retrieval, computed locally (no network, no torch)."""

from adapters.embeddings.minilm import MiniLMEmbedder, ModelMissing

__all__ = ["MiniLMEmbedder", "ModelMissing", "default_embedder"]

_DEFAULT: MiniLMEmbedder | None = None


def default_embedder() -> MiniLMEmbedder:
    """The shipped model, one per process; it loads on first use, so asking for it costs nothing."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MiniLMEmbedder()
    return _DEFAULT
