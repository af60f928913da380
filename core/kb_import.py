"""Reading knowledge-base entries from the files teams already have.

Markdown pages (one file is one entry, long ones are split at headings when
indexed), FAQ spreadsheets saved as CSV, and YAML lists. Each parser returns
plain dicts ``{title, answer, tags, source}``; validation and storage are
:mod:`core.knowledge`'s job. A problem names the file and the row or item, so
someone fixing a 300-row spreadsheet knows where to look.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import yaml

from core.errors import ValidationFailed

MARKDOWN = (".md", ".markdown")
CSV = (".csv",)
YAML = (".yaml", ".yml")
SUPPORTED = MARKDOWN + CSV + YAML
TITLE_KEYS = ("title", "question", "q")
ANSWER_KEYS = ("answer", "body", "a", "response")
TAG_KEYS = ("tags", "tag", "keywords")

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)


def _problem(where: str, what: str) -> ValidationFailed:
    return ValidationFailed.of({where: what})


def split_tags(value: Any) -> list[str]:
    """Tags from a list or from "a, b; c | d"."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = re.split(r"[,;|]", value)
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    return [p.strip() for p in parts if p and p.strip()]


def _title_from_name(source: str) -> str:
    stem = Path(source).stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or "Untitled"


def parse_markdown(text: str, source: str = "page.md") -> list[dict[str, Any]]:
    """One entry: title from front matter, else the first ``# `` heading, else the file name."""
    meta: dict[str, Any] = {}
    body = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(body)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise _problem(source, f"the front matter is not valid YAML ({exc.__class__.__name__})") from exc
        if not isinstance(loaded, dict):
            raise _problem(source, "the front matter must be key: value lines")
        meta = loaded
        body = body[match.end():]
    title = next((str(meta[k]) for k in TITLE_KEYS if meta.get(k)), None)
    h1 = _H1.search(body)
    if h1 and (title is None or body[: h1.start()].strip() == ""):
        title = title or h1.group(1).strip()
        body = body[: h1.start()] + body[h1.end():]
    body = body.strip()
    if not body:
        raise _problem(source, "the page has no text besides its title")
    return [{"title": title or _title_from_name(source), "answer": body, "tags": split_tags(meta.get("tags")), "source": source}]


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    return next((lowered[k] for k in keys if lowered.get(k) not in (None, "")), None)


def parse_csv(text: str, source: str = "faq.csv") -> list[dict[str, Any]]:
    """A header row naming ``question`` (or ``title``), ``answer`` and optionally ``tags``."""
    text = text.lstrip("\ufeff")
    try:
        dialect: Any = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = {(h or "").strip().lower() for h in reader.fieldnames or []}
    if not header & set(TITLE_KEYS) or not header & set(ANSWER_KEYS):
        raise _problem(source, "the first row must name the columns: question (or title), answer, and optionally tags")
    out = []
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        title, answer = _pick(row, TITLE_KEYS), _pick(row, ANSWER_KEYS)
        if not title or not answer:
            raise _problem(f"{source}:{line}", "needs both a question and an answer")
        out.append({"title": str(title).strip(), "answer": str(answer).strip(), "tags": split_tags(_pick(row, TAG_KEYS)), "source": source})
    return out


def parse_yaml(text: str, source: str = "faq.yaml") -> list[dict[str, Any]]:
    """A list of ``{question, answer, tags}``, the same under ``entries:``, or ``question: answer`` pairs."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise _problem(where, "is not valid YAML") from exc
    if isinstance(data, dict):
        listed = next((data[k] for k in ("entries", "faq", "questions") if isinstance(data.get(k), list)), None)
        if listed is not None:
            data = listed
        elif all(isinstance(v, str) for v in data.values()):
            data = [{"question": k, "answer": v} for k, v in data.items()]
    if not isinstance(data, list):
        raise _problem(source, "must be a list of entries with question and answer")
    out = []
    for number, item in enumerate(data, 1):
        where = f"{source}#{number}"
        if not isinstance(item, dict):
            raise _problem(where, "must be a mapping with question and answer")
        title, answer = _pick(item, TITLE_KEYS), _pick(item, ANSWER_KEYS)
        if not title or not answer:
            raise _problem(where, "needs both a question and an answer")
        out.append({"title": str(title).strip(), "answer": str(answer).strip(), "tags": split_tags(_pick(item, TAG_KEYS)), "source": source})
    return out


def parse_text(text: str, fmt: str, source: str) -> list[dict[str, Any]]:
    """Parse ``text`` in ``fmt`` (markdown, csv or yaml)."""
    parsers = {"markdown": parse_markdown, "csv": parse_csv, "yaml": parse_yaml}
    if fmt not in parsers:
        raise _problem("format", "must be one of markdown, csv, yaml")
    return parsers[fmt](text, source)


def format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in MARKDOWN:
        return "markdown"
    if suffix in CSV:
        return "csv"
    if suffix in YAML:
        return "yaml"
    return None


def read_path(path: Path) -> list[dict[str, Any]]:
    """Entries from a file, or from every supported file under a folder (sorted, recursive)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and format_of(p) and not p.name.startswith("."))
        if not files:
            raise _problem(str(path), "has no Markdown, CSV or YAML files")
        base = path
    elif path.is_file():
        files, base = [path], path.parent
    else:
        raise _problem(str(path), "no such file or folder")
    out: list[dict[str, Any]] = []
    for file in files:
        fmt = format_of(file)
        if fmt is None:
            raise _problem(str(file), "is not a .md, .csv, .yaml or .yml file")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise _problem(str(file), "is not UTF-8 text") from exc
        out.extend(parse_text(text, fmt, str(file.relative_to(base))))
    return out
