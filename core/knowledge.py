"""Knowledge-base entries: validation, storage, JSON shape, and the per-widget search index.

The index is built from a widget's entries in memory and rebuilt only when
they change (checked with one cheap aggregate query), so answering a
visitor costs a search, not a rebuild. With an embedding model (wired in
bot/wiring.py) the build also embeds the passages: that runs in a worker
thread, and vectors are cached by text, so an edit re-embeds only what changed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import validation as v
from core.chunking import chunk_entry
from core.clock import iso, utcnow
from core.embedding import Embedder, GuardedEmbedder
from core.errors import NotFound, ValidationFailed
from core.models import KnowledgeEntry
from core.retrieval import Index, Passage

FIELDS = {"title", "answer", "tags", "source"}
MAX_TITLE = 300
MAX_ANSWER = 20_000
MAX_TAGS = 20
MAX_ENTRIES_PER_WIDGET = 5000


def _tags(value: Any) -> list[str]:
    tags = v.list_of(value, lambda t: v.text(t, max_len=50), max_items=MAX_TAGS)
    return list(dict.fromkeys(tags))


def clean_entry(data: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, FIELDS)
    c = v.Checker()
    checks: dict[str, tuple[Any, dict[str, Any]]] = {
        "title": (v.text, {"max_len": MAX_TITLE}),
        "answer": (v.text, {"max_len": MAX_ANSWER}),
        "tags": (_tags, {}),
        "source": (v.text, {"max_len": 300, "required": False}),
    }
    if creating:
        for name in ("title", "answer"):
            if name not in data:
                c.errors[name] = "is required"
    out = {name: c.check(name, checks[name][0], value, **checks[name][1]) for name, value in data.items()}
    c.done()
    return out


async def count_entries(session: AsyncSession, widget_id: int) -> int:
    query = select(func.count(KnowledgeEntry.id)).where(KnowledgeEntry.widget_id == widget_id)
    return int((await session.execute(query)).scalar_one())


async def create_entry(session: AsyncSession, widget_id: int, data: Any) -> KnowledgeEntry:
    fields = {"tags": [], **clean_entry(data, creating=True)}
    if await count_entries(session, widget_id) >= MAX_ENTRIES_PER_WIDGET:
        raise ValidationFailed.of({"title": f"a widget can have at most {MAX_ENTRIES_PER_WIDGET} entries"})
    entry = KnowledgeEntry(widget_id=widget_id, **fields)
    session.add(entry)
    await session.flush()
    return entry


async def get_entry(session: AsyncSession, widget_id: int, entry_id: int) -> KnowledgeEntry:
    entry = await session.get(KnowledgeEntry, entry_id)
    if entry is None or entry.widget_id != widget_id:
        raise NotFound(f"no knowledge-base entry with id {entry_id} in this widget")
    return entry


async def update_entry(session: AsyncSession, entry: KnowledgeEntry, data: Any) -> KnowledgeEntry:
    for name, value in clean_entry(data, creating=False).items():
        if name in {"title", "answer"} and value is None:
            raise ValidationFailed.of({name: "is required"})
        setattr(entry, name, [] if name == "tags" and value is None else value)
    entry.updated_at = utcnow()
    await session.flush()
    return entry


async def list_entries(
    session: AsyncSession, widget_id: int, *, before_id: int | None = None, limit: int | None = None
) -> list[KnowledgeEntry]:
    """Newest first; with ``limit``, ``limit + 1`` rows so the caller can tell if more exist."""
    query = select(KnowledgeEntry).where(KnowledgeEntry.widget_id == widget_id).order_by(KnowledgeEntry.id.desc())
    if before_id is not None:
        query = query.where(KnowledgeEntry.id < before_id)
    if limit is not None:
        query = query.limit(limit + 1)
    return list((await session.execute(query)).scalars())


async def import_entries(
    session: AsyncSession, widget_id: int, drafts: list[dict[str, Any]], *, replace: bool = False
) -> tuple[int, int]:
    """Store parsed entries; an entry with the same title is updated, not duplicated.

    With ``replace`` every other entry of the widget is removed, so re-importing
    a folder mirrors it. Returns (created, updated).
    """
    cleaned = []
    for n, draft in enumerate(drafts, 1):
        try:
            cleaned.append({"tags": [], **clean_entry(draft, creating=True)})
        except ValidationFailed as exc:
            where = draft.get("source") or f"entry {n}"
            raise ValidationFailed(f"{where}: {exc.message}", fields=exc.fields) from exc
    existing = {e.title.strip().lower(): e for e in await list_entries(session, widget_id)}
    if replace:
        keep = {c["title"].strip().lower() for c in cleaned}
        gone = [e.id for t, e in existing.items() if t not in keep]
        if gone:
            await session.execute(delete(KnowledgeEntry).where(KnowledgeEntry.id.in_(gone)))
    created = updated = 0
    for fields in cleaned:
        entry = existing.get(fields["title"].strip().lower())
        if entry is None:
            session.add(KnowledgeEntry(widget_id=widget_id, **fields))
            created += 1
        elif (entry.answer, entry.tags, entry.source) != (fields["answer"], fields["tags"], fields.get("source")):
            entry.answer, entry.tags, entry.source = fields["answer"], fields["tags"], fields.get("source")
            entry.updated_at = utcnow()
            updated += 1
    if await count_entries(session, widget_id) + created > MAX_ENTRIES_PER_WIDGET:
        raise ValidationFailed.of({"entries": f"a widget can have at most {MAX_ENTRIES_PER_WIDGET} entries"})
    await session.flush()
    return created, updated


def entry_to_json(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "widget_id": entry.widget_id,
        "title": entry.title,
        "answer": entry.answer,
        "tags": list(entry.tags or []),
        "source": entry.source,
        "created_at": iso(entry.created_at),
        "updated_at": iso(entry.updated_at),
    }


def passages_of(entries: list[KnowledgeEntry]) -> list[Passage]:
    return [p for e in sorted(entries, key=lambda e: e.id) for p in chunk_entry(e.id, e.title, e.answer, e.tags or [])]


def build_index(entries: list[KnowledgeEntry], embedder: Embedder | GuardedEmbedder | None = None) -> Index:
    return Index.build(passages_of(entries), embedder=embedder)


class IndexCache:
    """One search index per widget, rebuilt when its entries change."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._cache: dict[int, tuple[tuple[Any, ...], Index]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.embedder: GuardedEmbedder | None = None
        if embedder is not None:
            self.use_embedder(embedder)

    def use_embedder(self, embedder: Embedder) -> None:
        """Blend in sentence embeddings from now on (one vector cache for every widget)."""
        self.embedder = GuardedEmbedder.of(embedder)
        self._cache.clear()

    async def index_for(self, session: AsyncSession, widget_id: int) -> Index:
        version = await _version(session, widget_id)
        hit = self._cache.get(widget_id)
        if hit is not None and hit[0] == version:
            return hit[1]
        async with self._locks.setdefault(widget_id, asyncio.Lock()):  # one build per widget at a time
            hit = self._cache.get(widget_id)
            if hit is not None and hit[0] == version:
                return hit[1]
            passages = passages_of(await list_entries(session, widget_id))  # plain data, read here
            if self.embedder is None or self.embedder.failed:
                index = Index.build(passages)
            else:  # embedding takes a while (the model loads on first use): keep the event loop free
                index = await asyncio.to_thread(Index.build, passages, embedder=self.embedder)
            self._cache[widget_id] = (version, index)
            return index


async def _version(session: AsyncSession, widget_id: int) -> tuple[Any, ...]:
    """Changes whenever an entry is added, edited or removed."""
    query = select(
        func.count(KnowledgeEntry.id), func.max(KnowledgeEntry.id), func.max(KnowledgeEntry.updated_at)
    ).where(KnowledgeEntry.widget_id == widget_id)
    count, max_id, latest = (await session.execute(query)).one()
    if isinstance(latest, datetime):
        latest = latest.isoformat()
    return int(count), max_id, str(latest)
