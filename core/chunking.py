"""Splitting knowledge-base entries into passages.

A short FAQ answer is one passage. A long Markdown page is split at its
headings (and long sections at paragraph breaks), so a question about one
section retrieves that section, and the assistant quotes a few paragraphs
instead of a whole page. Every passage keeps its entry's title and tags: they
say what the passage is about even when its own words do not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.retrieval import Passage

MAX_PASSAGE_CHARS = 1200
_HEADING = re.compile(r"^(#{2,6})\s+(.+?)\s*#*\s*$")


def _sections(text: str) -> list[tuple[str | None, str]]:
    """(heading, body) pairs in order; the part before the first heading has none."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            sections.append((match.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    return [(h, "\n".join(lines).strip()) for h, lines in sections if "\n".join(lines).strip() or h]


def _windows(body: str, limit: int) -> list[str]:
    """Paragraph-aligned pieces of at most ``limit`` characters (a longer paragraph stays whole)."""
    pieces: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        if not para:
            continue
        if current and len(current) + len(para) + 2 > limit:
            pieces.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        pieces.append(current)
    return pieces or [body]


def chunk_entry(entry_id: int, title: str, answer: str, tags: Sequence[str] = (), limit: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """The passages of one entry, in reading order."""
    tag_tuple = tuple(tags)
    if len(answer) <= limit and not any(_HEADING.match(line) for line in answer.splitlines()):
        return [Passage(f"{entry_id}:0", entry_id, title, answer.strip(), None, tag_tuple)]
    out: list[Passage] = []
    for heading, body in _sections(answer):
        if not body:
            continue
        for piece in _windows(body, limit):
            out.append(Passage(f"{entry_id}:{len(out)}", entry_id, title, piece, heading, tag_tuple))
    return out or [Passage(f"{entry_id}:0", entry_id, title, answer.strip(), None, tag_tuple)]
