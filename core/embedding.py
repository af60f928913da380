"""Sentence embeddings for retrieval: the port, a guarded cache, and the dense side of the index.

An *embedder* turns texts into unit vectors whose dot product says how close
their meanings are ("money back" and "refund" end up near each other even
though they share no word). The adapter in adapters/embeddings runs a small
model on the CPU; core only sees this port, so retrieval and its tests work
without it, and a knowledge base falls back to the lexical path (with one
warning in the log) when the model cannot be loaded.

What the index keeps per passage is several vectors, each answering a
different question about it: its *title* (the entry's title, each question
of a title that asks two, the section heading, and title with heading: an
FAQ title is phrased like the visitor's question), each *sentence* of its
text (a question about one detail matches the sentence that has it, which
a whole-passage vector dilutes), and the *whole passage* (title, tags and
text: what the answer is about as a whole). A passage's similarity to a
question is the mean of the best title, best sentence and whole-passage
cosine: no single view decides (on the dev split of tests/kb_eval each view
alone ranks worse than their mean). Per knowledge-base word, a vector too,
so a question word the knowledge base never uses can still be matched to
the word it means (``Index.slots`` uses that as a learned synonym list),
and which passages use each word, so the confidence can ask how much of
the question a passage covers *in meaning* (``word_coverage``): the
hand-written synonym list knows support-desk words, not a coffee shop's.
Vectors are cached by text, so an edit re-embeds only what changed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["PASSAGE", "SENTENCE", "TITLE", "DenseIndex", "Embedder", "GuardedEmbedder"]

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


TITLE, SENTENCE, PASSAGE = 0, 1, 2  # the kinds of a passage's vectors


@dataclass
class DenseIndex:
    """The vectors of one knowledge base's passages (several per passage) and words."""

    vectors: np.ndarray  # (units, d): every vector of every passage
    owners: np.ndarray  # (units,): the passage each vector belongs to
    kinds: np.ndarray  # (units,): TITLE, SENTENCE or PASSAGE
    passages: int
    words: list[str]
    word_vectors: np.ndarray  # (words, d)
    word_passages: np.ndarray | None = None  # (words, passages) bool: passage uses word (None: unknown)

    @classmethod
    def build(
        cls,
        embedder: GuardedEmbedder,
        units: Sequence[tuple[int, int, str]],
        passages: int,
        words: Sequence[str],
        passage_words: Sequence[Iterable[str]] = (),
    ) -> "DenseIndex | None":
        """From ``units``, (passage number, kind, text) triples: every passage needs a PASSAGE one.

        ``passage_words``: per passage, its words (those in ``words`` count),
        for ``word_coverage``; without them that falls back to no semantic match.
        """
        words = sorted(words)
        vectors = embedder.embed([text for _, _, text in units])
        word_vectors = embedder.embed(words) if words else None
        if vectors is None or (words and word_vectors is None):
            return None
        owners = np.array([n for n, _, _ in units], dtype=np.int64)
        kinds = np.array([kind for _, kind, _ in units], dtype=np.int8)
        if not np.array_equal(np.unique(owners[kinds == PASSAGE]), np.arange(passages)):
            raise ValueError("every passage needs one PASSAGE vector")
        if word_vectors is None:
            word_vectors = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        return cls(vectors, owners, kinds, passages, list(words), word_vectors, _membership(words, passage_words, passages))

    def view_similarity(self, query: np.ndarray) -> np.ndarray:
        """(3, passages): per passage its best TITLE, best SENTENCE and its PASSAGE cosine similarity.

        A passage without a title or sentence vector counts its whole-passage
        similarity for the missing view.
        """
        sims = self.vectors @ query
        best = np.full((3, self.passages), -np.inf, dtype=np.float32)
        np.maximum.at(best, (self.kinds, self.owners), sims)
        return np.where(np.isfinite(best), best, best[PASSAGE])

    def passage_similarity(self, query: np.ndarray) -> np.ndarray:
        """Per passage, the mean of its best title, best sentence and whole-passage cosine similarity."""
        return self.view_similarity(query).mean(axis=0)

    def word_similarity(self, word_vectors: np.ndarray, passage: int) -> np.ndarray:
        """Per given word vector, the cosine of the closest word that ``passage`` uses (0 if none known)."""
        if self.word_passages is None or not len(word_vectors):
            return np.zeros(len(word_vectors), dtype=np.float32)
        used = self.word_passages[:, passage]
        if not used.any():
            return np.zeros(len(word_vectors), dtype=np.float32)
        return (word_vectors @ self.word_vectors[used].T).max(axis=1)

    def similar_words(self, vector: np.ndarray, floor: float, limit: int = 3) -> list[tuple[str, float]]:
        """Knowledge-base words whose meaning is at least ``floor`` close to ``vector``, best first."""
        if not len(self.words):
            return []
        sims = self.word_vectors @ vector
        best = np.argsort(-sims)[:limit]
        return [(self.words[i], float(sims[i])) for i in best if sims[i] >= floor]


def _membership(words: Sequence[str], passage_words: Sequence[Iterable[str]], passages: int) -> np.ndarray | None:
    """(words, passages) bool matrix: which passage uses which of ``words`` (None without ``passage_words``)."""
    if not passage_words:
        return None
    row = {w: i for i, w in enumerate(words)}
    used = np.zeros((len(words), passages), dtype=bool)
    for n, found in enumerate(passage_words):
        for word in found:
            if word in row:
                used[row[word], n] = True
    return used
