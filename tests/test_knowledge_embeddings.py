"""Sentence embeddings in retrieval: the numpy encoder, the hybrid index, and the fallback to keywords."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from adapters.embeddings import MiniLMEmbedder, ModelMissing, default_embedder
from adapters.embeddings.minilm import model_dir
from adapters.embeddings.wordpiece import WordPiece
from core.chunking import chunk_entry
from core.embedding import PASSAGE, SENTENCE, TITLE, DenseIndex, GuardedEmbedder
from core.knowledge import IndexCache, create_entry
from core.models import KnowledgeEntry
from core.retrieval import Index, sentences
from core.services import Services
from core.widgets import create_widget

ENTRIES = [
    ("How much does it cost?", "deskbell is free and open source."),
    ("How do I add the chat widget to my website?", "Paste one script tag into your pages."),
    ("Can I get email notifications?", "Set SMTP_URL and notify_emails."),
]


def _passages():  # type: ignore[no-untyped-def]
    return [p for n, (t, a) in enumerate(ENTRIES, 1) for p in chunk_entry(n, t, a)]


class HashingEmbedder:
    """A stand-in model: a bag of hashed words, so texts sharing words are close. Counts its calls."""

    name = "hashing"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail:
            raise ModelMissing("no weights here")
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def knows(self, word: str) -> bool:
        return word in {"price", "widget", "email", "weather", "paris", "notifications", "chat", "site"}


# ---------------------------------------------------------------- the encoder


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    return default_embedder()


def test_the_weights_ship_with_the_package_and_are_the_expected_ones():
    directory = model_dir()
    assert (directory / "model.safetensors").stat().st_size > 80_000_000
    assert (directory / "vocab.txt").exists()


def test_the_numpy_encoder_reproduces_the_models_published_similarities(model: MiniLMEmbedder):
    """The model card's example: cosine 0.6946, 0.9429 and 0.2569 with the reference implementation."""
    v = model.embed(["That is a happy person", "That is a happy dog", "That is a very happy person", "Today is a sunny day"])
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0] @ v[1:].T, [0.6946, 0.9429, 0.2569], atol=2e-3)


def test_padding_in_a_batch_does_not_change_a_vector(model: MiniLMEmbedder):
    alone = model.embed(["refund"])[0]
    batched = model.embed(["refund", "how long does delivery take to the rest of the europe union and beyond"])[0]
    assert np.allclose(alone, batched, atol=1e-5)


def test_meaning_not_spelling_decides_closeness(model: MiniLMEmbedder):
    refund, money_back, shipping = model.embed(["How do I get a refund?", "I want my money back", "How long does shipping take?"])
    assert refund @ money_back > refund @ shipping + 0.2


def test_wordpiece_lowercases_strips_accents_and_splits_unknown_words(model: MiniLMEmbedder):
    tokenizer = model._model.tokenizer  # type: ignore[union-attr]
    vocab = tokenizer.vocab
    ids = tokenizer.encode("Café, widgit!", 16)
    inverse = {i: t for t, i in vocab.items()}
    assert [inverse[i] for i in ids][:3] == ["[CLS]", "cafe", ","] and inverse[ids[-1]] == "[SEP]"
    assert len(ids) > 5  # "widgit" is not one word of the vocabulary: several pieces
    assert len(tokenizer.encode("word " * 500, 128)) == 128
    assert model.knows("money") and model.knows("office") and not model.knows("widgit")


def test_a_missing_or_altered_model_is_reported_not_crashed_on(tmp_path: Path):
    with pytest.raises(ModelMissing):
        MiniLMEmbedder(tmp_path).embed(["x"])  # no files at all
    for name in ("config.json", "vocab.txt"):
        shutil.copy(model_dir() / name, tmp_path / name)
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelMissing, match="SHA-256"):
        MiniLMEmbedder(tmp_path).embed(["x"])


def test_wordpiece_gives_up_on_a_word_it_cannot_cut():
    tokenizer = WordPiece({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "ab": 3, "##c": 4})
    assert tokenizer.encode("abc abx", 10) == [1, 3, 4, 0, 2]


# ---------------------------------------------------------------- the hybrid index


def test_with_an_embedder_hits_carry_a_similarity_and_rank_the_right_entry():
    index = Index.build(_passages(), embedder=HashingEmbedder())
    assert index.dense is not None
    hits = index.search("email notifications")
    assert hits[0].passage.entry_id == 3 and hits[0].dense > 0.3
    assert 0.0 <= hits[0].confidence <= 1.0


def test_a_passage_is_embedded_by_title_each_sentence_and_whole():
    passage = chunk_entry(1, "Is it free? What does it cost?", "Yes. Hosting is on you.\n\n- no fees\n- no seats", ["pricing"])[0]
    index = Index.build([passage], embedder=HashingEmbedder())
    assert index.dense is not None
    units = sorted(zip(index.dense.kinds.tolist(), index.dense.owners.tolist()))
    assert units == [(TITLE, 0)] * 3 + [(SENTENCE, 0)] * 4 + [(PASSAGE, 0)]
    assert sentences("Set `KEY` first. Then run it: done.\n1. one step\n2. two steps") == [
        "Set `KEY` first.",
        "Then run it: done.",
        "one step",
        "two steps",
    ]


def test_a_passage_scores_the_mean_of_its_best_title_sentence_and_whole_vector():
    e = np.eye(4, dtype=np.float32)
    dense = DenseIndex(
        vectors=np.stack([e[0], e[1], e[2], e[3], e[0]]),
        owners=np.array([0, 0, 0, 0, 1]),
        kinds=np.array([TITLE, SENTENCE, SENTENCE, PASSAGE, PASSAGE], dtype=np.int8),
        passages=2,
        words=[],
        word_vectors=np.zeros((0, 4), dtype=np.float32),
    )
    query = np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32)
    # Passage 0: title 0.6, best sentence 0.8, whole 0.0. Passage 1 has only its whole vector (0.6).
    assert np.allclose(dense.passage_similarity(query), [(0.6 + 0.8 + 0.0) / 3, 0.6])


def test_a_question_word_counts_as_covered_by_the_closest_word_a_passage_uses():
    e = np.eye(4, dtype=np.float32)
    dense = DenseIndex(
        vectors=np.stack([e[3], e[3], e[3]]),
        owners=np.array([0, 1, 2]),
        kinds=np.array([PASSAGE, PASSAGE, PASSAGE], dtype=np.int8),
        passages=3,
        words=["parcel", "refund"],
        word_vectors=np.stack([e[0], e[1]]),
        word_passages=np.array([[True, False, False], [True, True, False]]),
    )
    question_word = np.array([[0.8, 0.6, 0.0, 0.0]], dtype=np.float32)
    # Passage 0 uses both words (the closer one counts), passage 1 only "refund", passage 2 neither.
    assert np.allclose([dense.word_similarity(question_word, n)[0] for n in range(3)], [0.8, 0.6, 0.0])


def test_word_coverage_finds_a_paraphrase_keyword_coverage_misses(model: MiniLMEmbedder):
    """"package" is no word of this knowledge base and no synonym in the lexicon; "parcel" is close in meaning."""
    passages = chunk_entry(1, "How do I track my parcel?", "Use the tracking link in your shipping email.")
    passages += chunk_entry(2, "Do you have decaf?", "Yes, a Swiss water decaf.")
    hits = Index.build(passages, embedder=model).search("where is my package")
    assert hits[0].passage.entry_id == 1 and hits[0].title_margin > 0
    assert hits[0].coverage == 0.0 < hits[0].word_coverage
    assert all(h.word_coverage >= h.coverage for h in hits)


def test_typos_the_model_does_not_know_are_corrected_before_embedding():
    index = Index.build(_passages(), embedder=HashingEmbedder())
    assert index.dense_query("emial notifications") == "email notifications"
    assert index.dense_query("weather in paris") == "weather in paris"  # real words stay, even if close to one


def test_vectors_are_cached_by_text_so_a_rebuild_embeds_only_what_changed():
    inner = HashingEmbedder()
    guard = GuardedEmbedder(inner)
    Index.build(_passages(), embedder=guard)
    before = sum(len(c) for c in inner.calls)
    changed = _passages()[:2] + chunk_entry(3, "Can I get email notifications?", "Set SMTP_URL.")
    Index.build(changed, embedder=guard)
    new_texts = [t for c in inner.calls[len(inner.calls) - 1 :] for t in c]
    # Only the changed text's vectors: its one sentence and the whole passage (the title is unchanged).
    assert sum(len(c) for c in inner.calls) - before == len(new_texts) == 2
    assert sorted(new_texts) == ["Can I get email notifications?. . Set SMTP_URL.", "Set SMTP_URL."]


def test_without_the_model_retrieval_falls_back_to_keywords_with_one_warning(caplog: pytest.LogCaptureFixture):
    lexical = Index.build(_passages())
    guard = GuardedEmbedder(HashingEmbedder(fail=True))
    with caplog.at_level(logging.WARNING, logger="core.embedding"):
        first = Index.build(_passages(), embedder=guard)
        second = Index.build(_passages(), embedder=guard)
    assert first.dense is None and second.dense is None
    for question in ("what is the price", "emial notifications", "how do i add the widgit"):
        assert [(h.passage.key, h.confidence) for h in first.search(question)] == [
            (h.passage.key, h.confidence) for h in lexical.search(question)
        ]
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "keywords only" in warnings[0].getMessage()
    assert guard.inner.calls == [guard.inner.calls[0]]  # never retried  # type: ignore[attr-defined]


def test_a_model_failing_after_the_build_still_answers_from_keywords(caplog: pytest.LogCaptureFixture):
    inner = HashingEmbedder()
    index = Index.build(_passages(), embedder=GuardedEmbedder(inner))
    inner.fail = True
    with caplog.at_level(logging.WARNING, logger="core.embedding"):
        hits = index.search("a brand new question about email")
    assert hits and hits[0].passage.entry_id == 3 and hits[0].dense == 0.0
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    lexical = Index.build(_passages())
    for question in ("what is the price", "emial notifications", "how do i add the widgit"):
        assert [(h.passage.key, h.confidence) for h in index.search(question)] == [
            (h.passage.key, h.confidence) for h in lexical.search(question)
        ]


async def test_the_index_cache_embeds_once_per_change(services: Services):
    inner = HashingEmbedder()
    cache = IndexCache(embedder=inner)
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
        await create_entry(session, widget.id, {"title": "Shipping?", "answer": "Free over 50 euros."})
    async with services.db.read() as session:
        first = await cache.index_for(session, widget.id)
        assert await cache.index_for(session, widget.id) is first and first.dense is not None
    calls = len(inner.calls)
    async with services.db.write() as session:
        entry = (await session.execute(select(KnowledgeEntry))).scalar_one()
        entry.answer = "Free over 30 euros."
    async with services.db.read() as session:
        rebuilt = await cache.index_for(session, widget.id)
    assert rebuilt is not first and "30 euros" in rebuilt.search("shipping costs")[0].passage.text
    assert len(inner.calls) > calls


def test_the_running_service_uses_the_shipped_model(services: Services):
    assert services.assistant is not None
    embedder = services.assistant.indexes.embedder
    assert embedder is not None and embedder.inner is default_embedder()
