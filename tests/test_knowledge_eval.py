"""The retrieval-only assistant measured on the evaluation set (tests/kb_eval/questions.yaml).

The issue's bar is top-1 >= 0.90 on answerable paraphrases and abstention
>= 0.95 on unanswerable questions. The shipped retrieval (keywords blended
with the all-MiniLM-L6-v2 sentence embeddings) does not reach it on the
held-out test split yet: the floors below guard what it does reach, with and
without the model (so a change cannot make it worse unnoticed), and the
target test is an expected failure that turns into an error the day it
passes, so the numbers here get raised. Run ``python bench/kb_eval.py
--misses`` for details (``--lexical`` for the fallback).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from core.assistant import DEFAULT_MIN_CONFIDENCE

BENCH = Path(__file__).parent.parent / "bench" / "kb_eval.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kb_eval", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kb_eval"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


KB_EVAL = _bench()
INDEX, TITLES = KB_EVAL.build_index()
LEXICAL, _ = KB_EVAL.build_index(lexical=True)
QUESTIONS = KB_EVAL.load_questions()


def _result(split: str, index=INDEX):  # type: ignore[no-untyped-def]
    return KB_EVAL.evaluate(index, TITLES, QUESTIONS, split, DEFAULT_MIN_CONFIDENCE)


def _holdout(lexical: bool):  # type: ignore[no-untyped-def]
    index, titles = KB_EVAL.build_index(KB_EVAL.HOLDOUT / "kb.yaml", lexical=lexical)
    questions = KB_EVAL.load_questions(KB_EVAL.HOLDOUT / "questions.yaml")
    return KB_EVAL.evaluate(index, titles, questions, "holdout", DEFAULT_MIN_CONFIDENCE)


def test_the_evaluation_measures_the_shipped_model_and_the_fallback():
    assert INDEX.dense is not None and LEXICAL.dense is None


def test_the_evaluation_set_is_big_enough_and_names_real_entries():
    test, dev = QUESTIONS["test"], QUESTIONS["dev"]
    assert len(test["answerable"]) >= 60 and len(test["unanswerable"]) >= 40
    assert len(dev["answerable"]) >= 150 and len(dev["unanswerable"]) >= 70  # enough to choose between models
    asked = {q["q"].lower() for split in (test, dev) for group in split.values() for q in group}
    assert len(asked) == sum(len(group) for split in (test, dev) for group in split.values())  # no question twice
    assert {q["expect"] for split in (test, dev) for q in split["answerable"]} <= set(TITLES.values())


# Measured: with the model dev 0.684/0.957, test 0.825/0.950; keywords only dev 0.581/0.943, test 0.730/0.925.
# (dev grew from 41 + 25 to 155 + 70 questions, harder than the first ones; the
# confidence refitted on it answers one test question fewer than the old fit,
# 0.841, and abstains on one more holdout question.)
@pytest.mark.parametrize(
    ("split", "lexical", "top1", "abstention"),
    [("dev", False, 0.68, 0.95), ("test", False, 0.82, 0.95), ("dev", True, 0.58, 0.94), ("test", True, 0.72, 0.92)],
)
def test_retrieval_only_does_not_fall_below_its_measured_quality(split, lexical, top1, abstention):
    result = _result(split, LEXICAL if lexical else INDEX)
    assert result.top1_accuracy >= top1, result.misses
    assert result.abstention_rate >= abstention, result.misses


@pytest.mark.xfail(strict=True, reason="issue 5 target not reached by retrieval-only yet (see bench/kb_eval.py)")
def test_retrieval_only_meets_the_issue_targets_on_the_test_split():
    result = _result("test")
    assert result.top1_accuracy >= 0.90 and result.abstention_rate >= 0.95


def test_on_the_untuned_holdout_domain_it_still_abstains_and_answers_some():
    """A coffee-shop knowledge base written after tuning (tests/kb_eval/holdout): the honest estimate.

    Measured: with the model 0.667 / 0.950 (retrieval ranks the right entry
    first for 24 of 30, 9 of those it abstains on), keywords only 0.567 / 0.950.
    """
    hybrid, lexical = _holdout(lexical=False), _holdout(lexical=True)
    assert hybrid.top1_accuracy >= 0.65 and hybrid.abstention_rate >= 0.95, hybrid.misses
    assert lexical.top1_accuracy >= 0.55 and lexical.abstention_rate >= 0.95, lexical.misses
