"""Measure the retrieval-only assistant on the evaluation set.

    .venv/bin/python bench/kb_eval.py              # dev and test split, the shipped threshold
    .venv/bin/python bench/kb_eval.py --split dev --sweep   # threshold sweep (tune on dev only)
    .venv/bin/python bench/kb_eval.py --misses     # list every wrong answer and abstention
    .venv/bin/python bench/kb_eval.py --holdout    # a coffee-shop knowledge base nobody tuned on

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


def build_index(kb_path: Path = KB_PATH) -> tuple[Index, dict[int, str]]:
    entries = read_path(kb_path)
    passages = []
    titles: dict[int, str] = {}
    for n, entry in enumerate(entries, 1):
        titles[n] = entry["title"]
        passages.extend(chunk_entry(n, entry["title"], entry["answer"], entry["tags"]))
    return Index.build(passages), titles


def load_questions(path: Path = QUESTIONS_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _describe(hits: list[Hit]) -> str:
    if not hits:
        return "no hit"
    h = hits[0]
    return f"{h.passage.label!r} conf={h.confidence:.2f} cov={h.coverage:.2f} sim={h.similarity:.2f}"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "both"), default="both")
    parser.add_argument("--threshold", type=float, default=DEFAULT_MIN_CONFIDENCE)
    parser.add_argument("--sweep", action="store_true", help="try thresholds from 0.30 to 0.80")
    parser.add_argument("--misses", action="store_true", help="list wrong answers and abstentions")
    parser.add_argument("--holdout", action="store_true", help="the coffee-shop holdout instead of the sample KB")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.holdout:
        index, titles = build_index(HOLDOUT / "kb.yaml")
        questions = load_questions(HOLDOUT / "questions.yaml")
        splits = ["holdout"]
    else:
        index, titles = build_index()
        questions = load_questions()
        splits = ["dev", "test"] if args.split == "both" else [args.split]
    built = time.perf_counter()
    print(f"knowledge base: {len(titles)} entries, {len(index.docs)} passages (indexed in {1000 * (built - started):.0f} ms)")
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
