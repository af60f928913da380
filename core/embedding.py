"""Sentence embeddings for retrieval: the port, a guarded cache, and the dense side of the index.

An *embedder* turns texts into unit vectors whose dot product says how close
their meanings are ("money back" and "refund" end up near each other even
though they share no word). The adapter in adapters/embeddings runs a small
model on the CPU; core only sees this port, so retrieval and its tests work
without it, and a knowledge base falls back to the lexical path (with one
warning in the log) when the model cannot be loaded.

What the index keeps per passage: the vector of its title (an FAQ title is
phrased like the visitor's question) and of its title with its text (what
the answer says). Per knowledge-base word, a vector too, so a question word
the knowledge base never uses can still be matched to the word it means
(``Index.slots`` uses that as a learned synonym list). Vectors are cached by
text, so an edit re-embeds only what changed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["DenseIndex", "Embedder", "GuardedEmbedder"]

log = logging.getLogger(__name__)

CACHE_SIZE = 50_000  # texts; 384 floats each, so at most ~75 MB


class Embedder(Protocol):
    """What retrieval needs from a sentence-embedding model."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text (float32). May raise if the model cannot load."""
        ...

    def knows(self, word: str) -> bool:
        """Whether the model has this (lowercase) word in its vocabulary as a whole.

        A word it does not know is likely misspelt, so retrieval corrects it
        to the closest knowledge-base word before embedding the question.
        """
        ...


class GuardedEmbedder:
    """An embedder with a per-text cache that turns itself off after its first failure.

    ``embed`` returns None once the model failed (logged once, as a warning):
    callers then use the lexical path only.
    """

    @classmethod
    def of(cls, inner: "Embedder | GuardedEmbedder") -> "GuardedEmbedder":
        """The one guard (and vector cache) of ``inner`` in this process."""
        if isinstance(inner, GuardedEmbedder):
            return inner
        with _GUARDS_LOCK:
            guard = _GUARDS.get(id(inner))
            if guard is None or guard.inner is not inner:
                guard = _GUARDS[id(inner)] = cls(inner)
            return guard

    def __init__(self, inner: Embedder, cache_size: int = CACHE_SIZE) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.failed = False
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.failed:
            return None
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            try:
                vectors = np.asarray(self.inner.embed(missing), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - any failure means: no embeddings here
                self._fail(exc)
                return None
            with self._lock:
                for text, vector in zip(missing, vectors):
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
                found = {t: self._cache.get(t) for t in texts}
            fresh = dict(zip(missing, vectors))
            rows = [found[t] if found[t] is not None else fresh[t] for t in texts]
        else:
            with self._lock:
                rows = [self._cache[t] for t in texts]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows)

    def knows(self, word: str) -> bool:
        if self.failed:
            return False
        try:
            return bool(self.inner.knows(word))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return False

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            first = not self.failed
            self.failed = True
        if first:
            log.warning(
                "embedding model %s unavailable, knowledge-base retrieval uses keywords only: %s", self.name, exc
            )


_GUARDS: dict[int, GuardedEmbedder] = {}
_GUARDS_LOCK = threading.Lock()


@dataclass
class DenseIndex:
    """The vectors of one knowledge base's passages and words."""

    titles: np.ndarray  # (passages, d)
    bodies: np.ndarray  # (passages, d)
    words: list[str]
    word_vectors: np.ndarray  # (words, d)

    @classmethod
    def build(
        cls, embedder: GuardedEmbedder, titles: Sequence[str], bodies: Sequence[str], words: Sequence[str]
    ) -> "DenseIndex | None":
        words = sorted(words)
        title_vectors = embedder.embed(titles)
        body_vectors = embedder.embed(bodies)
        word_vectors = embedder.embed(words) if words else None
        if title_vectors is None or body_vectors is None or (words and word_vectors is None):
            return None
        if word_vectors is None:
            word_vectors = np.zeros((0, title_vectors.shape[1]), dtype=np.float32)
        return cls(title_vectors, body_vectors, list(words), word_vectors)

    def passage_similarity(self, query: np.ndarray) -> np.ndarray:
        """Per passage, the better of title and body cosine similarity."""
        return np.maximum(self.titles @ query, self.bodies @ query)

    def similar_words(self, vector: np.ndarray, floor: float, limit: int = 3) -> list[tuple[str, float]]:
        """Knowledge-base words whose meaning is at least ``floor`` close to ``vector``, best first."""
        if not len(self.words):
            return []
        sims = self.word_vectors @ vector
        best = np.argsort(-sims)[:limit]
        return [(self.words[i], float(sims[i])) for i in best if sims[i] >= floor]
