"""Knowledge-base entries: validation, storage, JSON shape, and the per-widget search index.

The index is built from a widget's entries in memory and rebuilt only when
they change (checked with one cheap aggregate query), so answering a
visitor costs a search, not a rebuild. With an embedding model (wired in
bot/wiring.py) the build also embeds the passages: that takes seconds and
runs in a thread, in the background of the visitor's question (who is
answered from keywords meanwhile, see ``IndexCache.index_now``); vectors are
cached by text, so an edit re-embeds only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

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

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    """One search index per widget, rebuilt when its entries change.

    With an embedding model a build takes seconds (the sample knowledge base:
    about 5 s of CPU), so there are three ways to ask: ``index_for`` waits
    for the full index (the command line), ``build`` starts it and hands it
    back to await (the warm-up), ``index_now`` never waits (a visitor is
    waiting): until the full index of the current entries is built it
    answers from a keyword-only index, which builds in milliseconds, while
    the full build runs in the background. One build per widget runs at a
    time; builds run in daemon threads, so a stopping process never waits
    for one (an abandoned build loses nothing).
    """

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._cache: dict[int, tuple[tuple[Any, ...], Index]] = {}
        self._lexical: dict[int, tuple[tuple[Any, ...], Index]] = {}  # stand-ins while a build runs
        self._builds: dict[int, tuple[tuple[Any, ...], asyncio.Task[Index]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.embedder: GuardedEmbedder | None = None
        if embedder is not None:
            self.use_embedder(embedder)

    def use_embedder(self, embedder: Embedder) -> None:
        """Blend in sentence embeddings from now on (one vector cache for every widget)."""
        self.embedder = GuardedEmbedder.of(embedder)
        self._cache.clear()
        self._lexical.clear()

    @property
    def embeds(self) -> bool:
        """Whether builds embed (and so take seconds): a model is set and has not failed."""
        return self.embedder is not None and not self.embedder.failed

    async def index_for(self, session: AsyncSession, widget_id: int) -> Index:
        """The full index of the widget's current entries, waiting for its build if needed."""
        return await asyncio.shield(await self.build(session, widget_id))  # a caller giving up leaves the build be

    async def index_now(self, session: AsyncSession, widget_id: int) -> Index:
        """An index of the widget's current entries without waiting for embeddings.

        The full index when it is built; otherwise the keyword-only index, and
        the full build is started in the background (unless already running).
        """
        if not self.embeds:
            return await self.index_for(session, widget_id)  # keywords only anyway: a quick build
        version = await _version(session, widget_id)
        ready = self._ready(widget_id, version)
        if ready is not None:
            return ready
        lexical = self._lexical.get(widget_id)
        if lexical is not None and lexical[0] == version:
            return lexical[1]  # its full build was started with it
        passages = await _passages(session, widget_id)
        if self._pending(widget_id, version) is None:
            self._start_build(widget_id, version, passages)
        index = await asyncio.to_thread(Index.build, passages)
        self._lexical[widget_id] = (version, index)
        return index

    async def build(self, session: AsyncSession, widget_id: int) -> asyncio.Future[Index]:
        """Start building the widget's full index (if not built or building); the build, to await.

        Reads the entries with ``session`` and returns at once, so the caller
        need not hold a database session for the seconds the build takes.
        """
        version = await _version(session, widget_id)
        ready = self._ready(widget_id, version)
        if ready is not None:
            done: asyncio.Future[Index] = asyncio.get_running_loop().create_future()
            done.set_result(ready)
            return done
        build = self._pending(widget_id, version)
        return build or self._start_build(widget_id, version, await _passages(session, widget_id))

    def _ready(self, widget_id: int, version: tuple[Any, ...]) -> Index | None:
        hit = self._cache.get(widget_id)
        return hit[1] if hit is not None and hit[0] == version else None

    def _pending(self, widget_id: int, version: tuple[Any, ...]) -> asyncio.Task[Index] | None:
        running = self._builds.get(widget_id)
        return running[1] if running is not None and running[0] == version and not running[1].done() else None

    def _start_build(self, widget_id: int, version: tuple[Any, ...], passages: list[Passage]) -> asyncio.Task[Index]:
        task = asyncio.create_task(self._build(widget_id, version, passages), name=f"kb-index-{widget_id}")
        self._builds[widget_id] = (version, task)
        task.add_done_callback(lambda t: self._forget(widget_id, t))
        return task

    def _forget(self, widget_id: int, task: asyncio.Task[Index]) -> None:
        running = self._builds.get(widget_id)
        if running is not None and running[1] is task:
            del self._builds[widget_id]

    async def _build(self, widget_id: int, version: tuple[Any, ...], passages: list[Passage]) -> Index:
        async with self._locks.setdefault(widget_id, asyncio.Lock()):  # one build per widget at a time
            ready = self._ready(widget_id, version)
            if ready is not None:
                return ready
            index = await self._full_index(passages)
            self._cache[widget_id] = (version, index)
            lexical = self._lexical.get(widget_id)
            if lexical is not None and lexical[0] == version:
                del self._lexical[widget_id]  # replaced: free its memory
            return index

    async def _full_index(self, passages: list[Passage]) -> Index:
        """With embeddings when the model works; keywords only when it does not (as it did before)."""
        if not self.embeds:
            return await asyncio.to_thread(Index.build, passages)
        try:
            return await _in_daemon_thread(Index.build, passages, embedder=self.embedder)
        except Exception:  # noqa: BLE001 - a broken build must not leave the widget without answers
            log.exception("building the knowledge-base index with embeddings failed; answering from keywords")
            return await asyncio.to_thread(Index.build, passages)


async def _passages(session: AsyncSession, widget_id: int) -> list[Passage]:
    """The widget's passages as plain data: a build may outlive the session they were read in."""
    return passages_of(await list_entries(session, widget_id))


async def _in_daemon_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Like ``asyncio.to_thread``, in a daemon thread: ``asyncio.run`` waits for its executor's
    threads at exit, and a stopping service must not wait seconds for an index nobody will use."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(setter: Callable[[Any], Any], value: Any) -> None:
        def apply() -> None:
            if not future.done():
                setter(value)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(apply)

    def run() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            settle(future.set_exception, exc)
        else:
            settle(future.set_result, result)

    threading.Thread(target=run, name="kb-index-build", daemon=True).start()
    return await future


async def _version(session: AsyncSession, widget_id: int) -> tuple[Any, ...]:
    """Changes whenever an entry is added, edited or removed."""
    query = select(
        func.count(KnowledgeEntry.id), func.max(KnowledgeEntry.id), func.max(KnowledgeEntry.updated_at)
    ).where(KnowledgeEntry.widget_id == widget_id)
    count, max_id, latest = (await session.execute(query)).one()
    if isinstance(latest, datetime):
        latest = latest.isoformat()
    return int(count), max_id, str(latest)
