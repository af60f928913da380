"""Measure the retrieval-only assistant on the evaluation set.

    .venv/bin/python bench/kb_eval.py              # dev and test split, the shipped threshold
    .venv/bin/python bench/kb_eval.py --split dev --sweep   # threshold sweep (tune on dev only)
    .venv/bin/python bench/kb_eval.py --misses     # list every wrong answer and abstention
    .venv/bin/python bench/kb_eval.py --holdout    # a coffee-shop knowledge base nobody tuned on
    .venv/bin/python bench/kb_eval.py --lexical    # without the embedding model (the fallback)
    .venv/bin/python bench/kb_eval.py --fit        # refit the hybrid confidence on the dev split (L2 by leave-one-out)

Knowledge base: bot/sample_kb/ (what `make run` seeds). Questions:
tests/kb_eval/questions.yaml, split into dev (for tuning) and test (report only).
The holdout (tests/kb_eval/holdout/) is another domain, written after tuning
and measured once, to show how far the tuning carries to a new knowledge base.

Top-1 accuracy: share of answerable questions the assistant answers with the
expected entry (an abstention counts as a miss). Abstention rate: share of
unanswerable questions it declines to answer. Targets: >= 0.90 and >= 0.95.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from core.assistant import DEFAULT_MIN_CONFIDENCE, confident_hit  # noqa: E402
from core.chunking import chunk_entry  # noqa: E402
from core.kb_import import read_path  # noqa: E402
from core.retrieval import Hit, Index  # noqa: E402

KB_PATH = ROOT / "bot" / "sample_kb"
QUESTIONS_PATH = ROOT / "tests" / "kb_eval" / "questions.yaml"
HOLDOUT = ROOT / "tests" / "kb_eval" / "holdout"
# --fit puts the default threshold where the dev split reaches this abstention
# (67 of its 70 unanswerable questions) with the best top-1 accuracy.
ABSTENTION_GOAL = 0.95
# --fit tries these L2 strengths and keeps the one whose leave-one-out top-1
# accuracy at ABSTENTION_GOAL is best (see ``choose_l2``).
L2_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


@dataclass
class Result:
    split: str
    answerable: int = 0
    correct: int = 0
    retrieved_top1: int = 0  # right entry ranked first, whether or not answered
    false_abstentions: int = 0
    unanswerable: int = 0
    abstained: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def top1_accuracy(self) -> float:
        return self.correct / self.answerable if self.answerable else 0.0

    @property
    def abstention_rate(self) -> float:
        return self.abstained / self.unanswerable if self.unanswerable else 0.0


_EMBEDDER: Any = None


def embedder() -> Any:
    """The shipped embedding model, loaded once per process (None if not installed)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        try:
            from adapters.embeddings import default_embedder
        except ImportError:
            return None
        from core.embedding import GuardedEmbedder

        _EMBEDDER = GuardedEmbedder(default_embedder())  # one vector cache for every index built here
    return _EMBEDDER


def build_index(kb_path: Path = KB_PATH, *, lexical: bool = False) -> tuple[Index, dict[int, str]]:
    entries = read_path(kb_path)
    passages = []
    titles: dict[int, str] = {}
    for n, entry in enumerate(entries, 1):
        titles[n] = entry["title"]
        passages.extend(chunk_entry(n, entry["title"], entry["answer"], entry["tags"]))
    return Index.build(passages, embedder=None if lexical else embedder()), titles


def load_questions(path: Path = QUESTIONS_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _describe(hits: list[Hit]) -> str:
    if not hits:
        return "no hit"
    h = hits[0]
    return f"{h.passage.label!r} conf={h.confidence:.2f} cov={h.coverage:.2f} sim={h.similarity:.2f} dense={h.dense:.2f}"


def evaluate(index: Index, titles: dict[int, str], questions: dict[str, Any], split: str, threshold: float) -> Result:
    result = Result(split)
    known = set(titles.values())
    for item in questions[split]["answerable"]:
        if item["expect"] not in known:
            raise SystemExit(f"{split}: {item['q']!r} expects {item['expect']!r}, which is not in the knowledge base")
        result.answerable += 1
        hits = index.search(item["q"])
        top = titles[hits[0].passage.entry_id] if hits else None
        result.retrieved_top1 += top == item["expect"]
        chosen = confident_hit(hits, threshold)
        if chosen is None:
            result.false_abstentions += 1
            result.misses.append(f"ABSTAINED  {item['q']!r} -> wanted {item['expect']!r}; best {_describe(hits)}")
        elif titles[chosen.passage.entry_id] == item["expect"]:
            result.correct += 1
        else:
            result.misses.append(f"WRONG      {item['q']!r} -> wanted {item['expect']!r}; got {_describe(hits)}")
    for item in questions[split]["unanswerable"]:
        result.unanswerable += 1
        hits = index.search(item["q"])
        if confident_hit(hits, threshold) is None:
            result.abstained += 1
        else:
            result.misses.append(f"ANSWERED   {item['q']!r} (unanswerable); got {_describe(hits)}")
    return result


def _line(r: Result) -> str:
    return (
        f"{r.split:<7} top-1 accuracy {r.top1_accuracy:.3f} ({r.correct}/{r.answerable}, retrieval top-1 "
        f"{r.retrieved_top1}/{r.answerable}, abstained on {r.false_abstentions})   "
        f"abstention {r.abstention_rate:.3f} ({r.abstained}/{r.unanswerable})"
    )


def _features(h: Hit) -> list[float]:
    """What the hybrid confidence weighs (see ``hybrid_confidence_of`` in core/retrieval.py)."""
    return [h.coverage, h.word_coverage, h.margin, h.title_margin]


def _fit_rows(index: Index, titles: dict[int, str], questions: dict[str, Any], split: str) -> tuple[Any, Any, Any]:
    """(features of each question's top hit, 1 if it is the expected entry, 1 if the question is answerable)."""
    import numpy as np

    rows, right, answerable = [], [], []
    for group in ("answerable", "unanswerable"):
        for item in questions[split][group]:
            hits = index.search(item["q"])
            rows.append(_features(hits[0]) if hits else [0.0] * 4)
            right.append(float(bool(hits) and item.get("expect") is not None and titles[hits[0].passage.entry_id] == item["expect"]))
            answerable.append(group == "answerable")
    return np.array(rows), np.array(right), np.array(answerable)


def _logistic(x: Any, y: Any, l2: float) -> tuple[Any, float]:
    """Weights and bias minimising mean log-loss + l2/2 |w|^2 (the bias is not penalised).

    Newton's method: exact in a few steps, so leave-one-out (one fit per
    question and L2 value) takes seconds rather than minutes.
    """
    import numpy as np

    xa = np.hstack([x, np.ones((len(x), 1))])
    penalty = np.full(xa.shape[1], l2)
    penalty[-1] = 0.0
    theta = np.zeros(xa.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(xa @ theta)))
        gradient = xa.T @ (p - y) / len(y) + penalty * theta
        hessian = (xa * (p * (1 - p))[:, None]).T @ xa / len(y) + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:-1], float(theta[-1])


def _cut_at_goal(z: Any, answerable: Any, goal: float) -> float:
    """The lowest cut-off logit (answer when z >= it) that abstains on at least ``goal`` of the unanswerable questions.

    Placed halfway to the next question's score, so a question exactly at
    the edge does not decide it.
    """
    import math

    unanswerable = sorted(float(v) for v in z[~answerable])
    need = math.ceil(goal * len(unanswerable) - 1e-9)
    if need == 0:
        return float(z.min()) - 1
    edge = unanswerable[need - 1]
    above = [float(v) for v in z if v > edge]
    return (edge + min(above)) / 2 if above else edge + 1


def _top1_at_goal(z: Any, right: Any, answerable: Any, goal: float) -> tuple[float, float]:
    """(top-1 accuracy on the answerable questions, cut-off logit) when the cut-off keeps abstention at ``goal``."""
    cut = _cut_at_goal(z, answerable, goal)
    return float(((z >= cut) & (right > 0) & answerable).sum() / answerable.sum()), cut


def choose_l2(x: Any, right: Any, answerable: Any, goal: float = ABSTENTION_GOAL) -> float:
    """The L2 strength whose held-out scores (each question scored by a fit without it) answer best at the goal.

    Judged by the issue's figure, top-1 accuracy at the abstention goal, not
    by log-loss: on the dev split log-loss prefers almost no L2 (its optimum
    is calibrating the many easy questions) while the threshold is set by the
    few hardest unanswerable ones, where a flatter model does better. Both
    are printed.
    """
    import numpy as np

    best: tuple[float, float] | None = None
    for l2 in L2_GRID:
        z = np.zeros(len(right))
        for i in range(len(right)):
            keep = np.arange(len(right)) != i
            w, b = _logistic(x[keep], right[keep], l2)
            z[i] = float(x[i] @ w + b)
        p = np.clip(1 / (1 + np.exp(-z)), 1e-12, 1 - 1e-12)
        log_loss = float(-np.mean(right * np.log(p) + (1 - right) * np.log(1 - p)))
        top1, _ = _top1_at_goal(z, right, answerable, goal)
        print(f"L2 {l2:<7} leave-one-out: top-1 at abstention {goal} {top1:.3f}, log-loss {log_loss:.3f}")
        if best is None or top1 > best[1]:
            best = (l2, top1)
    assert best is not None
    return best[0]


def fit_confidence(
    index: Index, titles: dict[int, str], questions: dict[str, Any], split: str = "dev", min_abstention: float = ABSTENTION_GOAL
) -> tuple[list[float], float]:
    """Fit the hybrid confidence (logistic regression, L2 by leave-one-out) on one split and print the constants.

    Target: the top passage is from the expected entry (0 for unanswerable
    questions, and for answerable ones ranked wrong: answering those is a
    wrong answer). The bias is shifted so that the lowest threshold keeping
    abstention >= ``min_abstention`` on this split lands on the assistant's
    default.
    """
    import math

    x, right, answerable = _fit_rows(index, titles, questions, split)
    l2 = choose_l2(x, right, answerable, min_abstention)
    w, b = _logistic(x, right, l2)
    top1, cut = _top1_at_goal(x @ w + b, right, answerable, min_abstention)
    shift = math.log(DEFAULT_MIN_CONFIDENCE / (1 - DEFAULT_MIN_CONFIDENCE)) - cut
    print(f"HYBRID_WEIGHTS = ({', '.join(f'{v:.2f}' for v in w)})   # L2 {l2}")
    print(f"HYBRID_BIAS = {b + shift:.2f}   # cut-off logit {cut:.2f} -> {DEFAULT_MIN_CONFIDENCE}; {split} top-1 {top1:.3f}")
    return [round(float(v), 2) for v in w], round(b + shift, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "both"), default="both")
    parser.add_argument("--threshold", type=float, default=DEFAULT_MIN_CONFIDENCE)
    parser.add_argument("--sweep", action="store_true", help="try thresholds from 0.30 to 0.80")
    parser.add_argument("--misses", action="store_true", help="list wrong answers and abstentions")
    parser.add_argument("--holdout", action="store_true", help="the coffee-shop holdout instead of the sample KB")
    parser.add_argument("--lexical", action="store_true", help="keywords only, without the embedding model")
    parser.add_argument("--fit", action="store_true", help="fit the hybrid confidence on the dev split")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.holdout:
        index, titles = build_index(HOLDOUT / "kb.yaml", lexical=args.lexical)
        questions = load_questions(HOLDOUT / "questions.yaml")
        splits = ["holdout"]
    else:
        index, titles = build_index(lexical=args.lexical)
        questions = load_questions()
        splits = ["dev", "test"] if args.split == "both" else [args.split]
    built = time.perf_counter()
    mode = f"keywords + {index.embedder.name} embeddings" if index.dense is not None and index.embedder else "keywords only"
    print(
        f"knowledge base: {len(titles)} entries, {len(index.docs)} passages, {mode} "
        f"(indexed in {1000 * (built - started):.0f} ms, model load included)"
    )
    if args.fit:
        if index.dense is None:
            raise SystemExit("--fit needs the embedding model")
        fit_confidence(index, titles, questions, "dev")
        return 0
    if args.sweep:
        for split in splits:
            for step in range(30, 81, 2):
                r = evaluate(index, titles, questions, split, step / 100)
                print(f"threshold {step / 100:.2f}  " + _line(r))
        return 0
    print(f"threshold {args.threshold:.2f}")
    asked = 0
    for split in splits:
        r = evaluate(index, titles, questions, split, args.threshold)
        asked += r.answerable + r.unanswerable
        print(_line(r))
        if args.misses:
            for miss in r.misses:
                print("   " + miss)
    elapsed = time.perf_counter() - built
    print(f"{asked} questions in {1000 * elapsed:.0f} ms ({1000 * elapsed / max(1, asked):.1f} ms each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
