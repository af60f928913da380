"""Visitor lines stored in batches: the group-commit form of ``post_visitor_message``.

When many visitors type at once, their lines queue for the same transaction
(core/group_commit.py). Written one by one, each line costs a reserve and an
INSERT, on PostgreSQL each a round trip, and a chat's first line also an
open and a flush. Here a batch costs a fixed handful of statements whatever
its size, and every statement takes arrays (one JSON array of rows on
SQLite), so every batch size runs the same prepared statement.

* **PostgreSQL**: one statement reserves the seqs of every line whose
  visitor has an open chat *and* inserts those lines (a data-modifying CTE).
  A round trip is what a batch waits for once the machine is busy: the
  process that sent it is descheduled, PostgreSQL wakes, answers, and the
  process waits its turn to read the answer (bench/RESULTS.md).
* **SQLite**: a statement costs SQLAlchemy's ~0.1 ms, not a round trip;
  a reserve UPDATE, then one INSERT of all the lines.
* On both, the chats of visitors who have none open are opened together by
  one more INSERT (a page with the widget goes live, a campaign link).

On PostgreSQL the commonest batch, lines in open chats that only owe their
relays, needs no transaction around it at all: :func:`store_in_chats`
stores the lines and their outbox rows in one statement, which commits on
its own. BEGIN and COMMIT were two of a batch's four round trips. It opens
the chats of new visitors too, where a chat's start owes nothing more than
its relays: a new visitor's first line took six round trips.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Boolean, Integer, Text, bindparam, column
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.conversations import Posted, VisitorContext
from core.driver_sql import returned_rows
from core.fanout import RELAY_ORDERING_PREFIX
from core.models import Conversation, Message, detached

if TYPE_CHECKING:
    from core.db import Database

__all__ = ["LinesNotBulk", "Relay", "VisitorLine", "post_visitor_lines", "store_in_chats"]

Pair = tuple[int, str]  # (widget_id, visitor_id): whose chat a line goes to


@dataclass(frozen=True)
class VisitorLine:
    """One visitor line waiting to be stored with others (see :func:`post_visitor_lines`)."""

    widget_id: int
    visitor_id: str
    text: str  # already cleaned (clean_text)
    client_id: str | None  # already checked (clean_client_id)
    context: VisitorContext = VisitorContext()  # opens the chat when this line is its first

    @property
    def pair(self) -> Pair:
        return (self.widget_id, self.visitor_id)

    @property
    def page_url(self) -> str | None:
        return self.context.page_url or None


@dataclass(frozen=True)
class Relay:
    """A channel a widget's lines are relayed to: its binding and the outbox kind."""

    widget_id: int
    binding_id: int
    kind: str  # "{platform}.relay"


class LinesNotBulk(Exception):
    """The lines cannot be stored together (a resent client_id, two open chats of one
    visitor): the caller stores each alone, which handles those cases."""


_RESERVE_MANY_SQLITE = """
UPDATE conversations AS c
SET last_seq = c.last_seq + v.n, updated_at = :now, page_url = coalesce(v.page_url, c.page_url)
FROM (
    SELECT json_extract(value, '$[0]') AS widget_id, json_extract(value, '$[1]') AS visitor_id,
           json_extract(value, '$[2]') AS n, json_extract(value, '$[3]') AS page_url
    FROM json_each(:rows)
) AS v
WHERE c.widget_id = v.widget_id AND c.visitor_id = v.visitor_id AND +c.status = 'open'
RETURNING *
"""
"""SQLite: reserve ``n`` seqs in each visitor's open chat. The unary ``+`` keeps SQLite
off the index on status: with it, SQLite walked every open conversation and scanned
the batch's JSON for each (1.1 ms with 1,200 open chats, growing with them); without
it, it looks each batch row up by (widget, visitor): 0.03 ms. tests/test_group_commit.py
checks the plan."""

_CONVERSATION_COLUMNS = [c.name for c in Conversation.__table__.c]
_OPEN_COLUMNS = "widget_id, visitor_id, visitor_name, visitor_email, page_url, page_title, language, timezone, status, last_seq, created_at, updated_at"
_MESSAGE_COLUMNS = [c.name for c in Message.__table__.c]

_APPEND_MANY_POSTGRESQL = f"""
WITH v AS (
    SELECT * FROM unnest(:widget_ids, :visitor_ids, :counts, :page_urls) AS v(widget_id, visitor_id, n, page_url)
), r AS (
    UPDATE conversations AS c
    SET last_seq = c.last_seq + v.n, updated_at = :now, page_url = coalesce(v.page_url, c.page_url)
    FROM v
    WHERE c.widget_id = v.widget_id AND c.visitor_id = v.visitor_id AND (c.status || '') = 'open'
    RETURNING c.*, v.n AS batch_lines
), m AS (
    INSERT INTO messages (conversation_id, seq, sender, author, text, internal, client_id, created_at)
    SELECT r.id, r.last_seq - r.batch_lines + l.k, 'visitor', r.visitor_name, l.text, false, l.client_id, :now
    FROM unnest(:line_widget_ids, :line_visitor_ids, :line_ranks, :texts, :client_ids)
        AS l(widget_id, visitor_id, k, text, client_id)
    JOIN r ON r.widget_id = l.widget_id AND r.visitor_id = l.visitor_id
    ON CONFLICT (conversation_id, client_id) DO NOTHING
    RETURNING messages.*
)
SELECT {", ".join(f"r.{n} AS c_{n}" for n in _CONVERSATION_COLUMNS)},
       {", ".join(f"m.{n} AS m_{n}" for n in _MESSAGE_COLUMNS)}
FROM r LEFT JOIN m ON m.conversation_id = r.id
"""
"""PostgreSQL: reserve the seqs of the lines of visitors with an open chat and insert
those lines, in one statement. The ``k``-th of a visitor's ``n`` lines in the batch
takes seq ``last_seq - n + k`` (``last_seq`` already raised by ``n``). One row per
stored line, with its chat's columns (``c_``) and its own (``m_``); a chat whose lines
all met a stored client_id comes back once, with NULL ``m_`` columns. ``(c.status || '')``
keeps a plan made without statistics off the index on status, as in the store below."""

_STORE_IN_CHATS_POSTGRESQL = f"""
WITH l AS (
    SELECT * FROM unnest(:widget_ids, :visitor_ids, :texts, :client_ids, :page_urls, :may_open,
                         :names, :emails, :page_titles, :languages, :timezones) WITH ORDINALITY
        AS l(widget_id, visitor_id, text, client_id, page_url, may_open, visitor_name, visitor_email, page_title,
             language, timezone, i)
), p AS (  -- each visitor's first line (whose context opens a chat), their line count and last page
    SELECT DISTINCT ON (l.widget_id, l.visitor_id) l.*, a.n, a.last_page
    FROM l JOIN (
        SELECT widget_id, visitor_id, count(*) AS n,
               (array_agg(page_url ORDER BY i DESC) FILTER (WHERE page_url IS NOT NULL))[1] AS last_page
        FROM l GROUP BY widget_id, visitor_id
    ) AS a ON a.widget_id = l.widget_id AND a.visitor_id = l.visitor_id
    ORDER BY l.widget_id, l.visitor_id, l.i
), chat AS (
    SELECT p.widget_id, p.visitor_id, newest.id
    FROM p CROSS JOIN LATERAL (
        SELECT c.id FROM conversations AS c
        WHERE c.widget_id = p.widget_id AND c.visitor_id = p.visitor_id AND (c.status || '') = 'open'
        ORDER BY c.id DESC LIMIT 1
    ) AS newest
), opened AS (
    INSERT INTO conversations ({_OPEN_COLUMNS})
    SELECT p.widget_id, p.visitor_id, p.visitor_name, p.visitor_email, p.last_page, p.page_title, p.language,
           p.timezone, 'open', p.n, :now, :now
    FROM p
    WHERE p.may_open AND NOT EXISTS (SELECT 1 FROM chat WHERE chat.widget_id = p.widget_id AND chat.visitor_id = p.visitor_id)
    RETURNING conversations.*
), fresh AS (
    SELECT l.i, chat.id AS conversation_id, l.text, l.client_id, l.page_url,
           row_number() OVER (PARTITION BY chat.id ORDER BY l.i) AS k
    FROM l JOIN chat ON chat.widget_id = l.widget_id AND chat.visitor_id = l.visitor_id
    WHERE l.client_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM messages AS x WHERE x.conversation_id = chat.id AND x.client_id = l.client_id
    )
), n AS (
    SELECT conversation_id, count(*) AS n,
           (array_agg(page_url ORDER BY i DESC) FILTER (WHERE page_url IS NOT NULL))[1] AS page_url
    FROM fresh GROUP BY conversation_id
), r AS (
    UPDATE conversations AS c
    SET last_seq = c.last_seq + n.n, updated_at = :now, page_url = coalesce(n.page_url, c.page_url)
    FROM n
    WHERE c.id = ANY(ARRAY(SELECT conversation_id FROM n)) AND c.id = n.conversation_id AND (c.status || '') = 'open'
    RETURNING c.*, n.n AS batch_lines
), chats AS (
    SELECT r.*, false AS started FROM r
    UNION ALL
    SELECT o.*, o.last_seq AS batch_lines, true AS started FROM opened AS o
), lines AS (
    SELECT f.i, f.conversation_id, f.text, f.client_id, f.k FROM fresh AS f
    UNION ALL
    SELECT l.i, o.id, l.text, l.client_id, row_number() OVER (PARTITION BY o.id ORDER BY l.i)
    FROM l JOIN opened AS o ON o.widget_id = l.widget_id AND o.visitor_id = l.visitor_id
), m AS (
    INSERT INTO messages (conversation_id, seq, sender, author, text, internal, client_id, created_at)
    SELECT c.id, c.last_seq - c.batch_lines + f.k, 'visitor', c.visitor_name, f.text, false, f.client_id, :now
    FROM lines AS f JOIN chats AS c ON c.id = f.conversation_id
    ORDER BY c.id, f.k
    ON CONFLICT (conversation_id, client_id) DO NOTHING
    RETURNING messages.*
), o AS (
    INSERT INTO outbox (kind, payload, status, ordering_key, ref_type, ref_id, attempts, next_attempt_at, created_at)
    SELECT d.kind, json_build_object('binding_id', d.binding_id, 'conversation_id', m.conversation_id, 'message_id', m.id),
           'pending', :ordering_prefix || d.binding_id || ':' || m.conversation_id, 'conversation', m.conversation_id,
           0, :now, :now
    FROM m JOIN chats AS c ON c.id = m.conversation_id
    JOIN unnest(:relay_widget_ids, :relay_binding_ids, :relay_kinds) AS d(widget_id, binding_id, kind)
        ON d.widget_id = c.widget_id
    ORDER BY m.conversation_id, m.seq, d.binding_id
)
SELECT f.i AS line, c.started,
       {", ".join(f"c.{n} AS c_{n}" for n in _CONVERSATION_COLUMNS)},
       {", ".join(f"m.{n} AS m_{n}" for n in _MESSAGE_COLUMNS)}
FROM lines AS f JOIN chats AS c ON c.id = f.conversation_id
LEFT JOIN m ON m.conversation_id = f.conversation_id AND m.seq = c.last_seq - c.batch_lines + f.k
"""
"""PostgreSQL, in one self-committing statement: the lines of visitors with an open
chat (the newest, as lines written one by one find it), each taking the next seq;
a chat opened for each visitor with none whose line ``may_open`` one (from their
first line's context, as :func:`post_visitor_lines` opens it; its lines take seqs
1 to n); and an outbox row relaying each line to every channel of its widget, in
seq order (the relay posts a chat's rows in id order). A line whose client_id is
stored already (a resend) is left out before any seq is taken, so a resend leaves
no gap; one row per line stored, numbered from 1 as the lines were given
(``line``), ``started`` on the lines of a chat it opened.

The odd forms are for plans made before the tables have statistics (a new
deployment's first minute, every benchmark run): ``(c.status || '')`` keeps
PostgreSQL off the index on status (it walked every open chat per statement, 10-48
ms at 1,200 open chats), the LATERAL probe finds each visitor's chat by (widget,
visitor), and ``c.id = ANY(ARRAY(...))`` lets the UPDATE fetch its rows by primary
key. tests/test_group_commit.py checks the plan with and without statistics."""

# The chats of visitors who have none open, opened together (a burst of new visitors:
# one statement instead of a reserve, an INSERT and a flush per chat). ``n`` is how many
# of the batch's lines the chat gets: they take seqs 1 to n.
_OPEN_MANY = {
    "postgresql": f"""
INSERT INTO conversations ({_OPEN_COLUMNS})
SELECT v.widget_id, v.visitor_id, v.visitor_name, v.visitor_email, v.page_url, v.page_title, v.language,
       v.timezone, 'open', v.n, :now, :now
FROM unnest(:widget_ids, :visitor_ids, :names, :emails, :page_urls, :page_titles, :languages, :timezones, :counts)
    AS v(widget_id, visitor_id, visitor_name, visitor_email, page_url, page_title, language, timezone, n)
RETURNING conversations.*
""",
    "sqlite": f"""
INSERT INTO conversations ({_OPEN_COLUMNS})
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), json_extract(value, '$[7]'), 'open', json_extract(value, '$[8]'), :now, :now
FROM json_each(:rows)
RETURNING *
""",
}

_INSERT_MANY = {
    "postgresql": """
INSERT INTO messages (conversation_id, seq, sender, author, text, internal, client_id, created_at)
SELECT v.conversation_id, v.seq, 'visitor', v.author, v.text, false, v.client_id, :now
FROM unnest(:conversation_ids, :seqs, :authors, :texts, :client_ids) AS v(conversation_id, seq, author, text, client_id)
ON CONFLICT (conversation_id, client_id) DO NOTHING
RETURNING messages.*
""",
    # "WHERE true": without it SQLite would read ON CONFLICT as a join's ON.
    "sqlite": """
INSERT INTO messages (conversation_id, seq, sender, author, text, internal, client_id, created_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'visitor', json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), 0, json_extract(value, '$[4]'), :now
FROM json_each(:rows) WHERE true
ON CONFLICT (conversation_id, client_id) DO NOTHING
RETURNING *
""",
}


@dataclass(frozen=True)
class _Statements:
    """A dialect's bulk statements; ``reserve`` on SQLite, ``append`` (reserve and
    insert in one) and ``store`` (lines and relays, outside a transaction) on PostgreSQL."""

    reserve: Any
    append: Any
    open: Any
    insert: Any
    store: Any = None


@lru_cache(maxsize=None)
def _many_statements(dialect: str) -> _Statements:
    """The dialect's bulk statements, typed so every batch size runs the same prepared statement."""
    conversations, messages = Conversation.__table__, Message.__table__
    now = bindparam("now", type_=conversations.c.updated_at.type)
    created = bindparam("now", type_=messages.c.created_at.type)
    if dialect == "sqlite":
        rows = bindparam("rows", type_=Text)
        return _Statements(
            reserve=sql_text(_RESERVE_MANY_SQLITE).bindparams(rows, now).columns(*conversations.c),
            append=None,
            open=sql_text(_OPEN_MANY[dialect]).bindparams(rows, now).columns(*conversations.c),
            insert=sql_text(_INSERT_MANY[dialect]).bindparams(rows, created).columns(*messages.c),
        )
    big, text_array, int_array = ARRAY(BigInteger), ARRAY(Text), ARRAY(Integer)
    pairs = [bindparam("widget_ids", type_=big), bindparam("visitor_ids", type_=text_array)]
    append = sql_text(_APPEND_MANY_POSTGRESQL).bindparams(
        *pairs, bindparam("counts", type_=int_array), bindparam("page_urls", type_=text_array),
        bindparam("line_widget_ids", type_=big), bindparam("line_visitor_ids", type_=text_array),
        bindparam("line_ranks", type_=int_array), bindparam("texts", type_=text_array),
        bindparam("client_ids", type_=text_array), now,
    ).columns(
        *(column(f"c_{c.name}", c.type) for c in conversations.c),
        *(column(f"m_{c.name}", c.type) for c in messages.c),
    )
    open_ = sql_text(_OPEN_MANY[dialect]).bindparams(
        *pairs,
        *(bindparam(name, type_=text_array) for name in ("names", "emails", "page_urls", "page_titles", "languages", "timezones")),
        bindparam("counts", type_=int_array), now,
    ).columns(*conversations.c)
    insert = sql_text(_INSERT_MANY[dialect]).bindparams(
        bindparam("conversation_ids", type_=big), bindparam("seqs", type_=int_array),
        bindparam("authors", type_=text_array), bindparam("texts", type_=text_array),
        bindparam("client_ids", type_=text_array), created,
    ).columns(*messages.c)
    store = sql_text(_STORE_IN_CHATS_POSTGRESQL).bindparams(
        *pairs, bindparam("texts", type_=text_array), bindparam("client_ids", type_=text_array),
        bindparam("page_urls", type_=text_array), bindparam("may_open", type_=ARRAY(Boolean)),
        *(bindparam(name, type_=text_array) for name in ("names", "emails", "page_titles", "languages", "timezones")),
        bindparam("relay_widget_ids", type_=big), bindparam("relay_binding_ids", type_=big),
        bindparam("relay_kinds", type_=text_array), bindparam("ordering_prefix", type_=Text), now,
    ).columns(
        column("line", BigInteger()), column("started", Boolean()),
        *(column(f"c_{c.name}", c.type) for c in conversations.c),
        *(column(f"m_{c.name}", c.type) for c in messages.c),
    )
    return _Statements(reserve=None, append=append, open=open_, insert=insert, store=store)


def _bulk_params(dialect: str, columns: dict[str, list[Any]], now: Any) -> dict[str, Any]:
    """Columns of values as the dialect's statement takes them: arrays, or one JSON array of rows.

    On SQLite a row's values are read by position (``$[0]``, ``$[1]`` ...), in
    the order of ``columns``: the statements above name that order.
    """
    if dialect == "sqlite":
        return {"rows": json.dumps(list(zip(*columns.values())), ensure_ascii=False), "now": now}
    return {**columns, "now": now}


@dataclass
class _Batch:
    """The lines grouped by chat: how many each visitor sent, the last page each was on,
    and each line's rank (1, 2 ...) among its visitor's lines."""

    lines: Sequence[VisitorLine]
    counts: Counter[Pair]
    page_urls: dict[Pair, str | None]
    ranks: list[int]

    @classmethod
    def of(cls, lines: Sequence[VisitorLine]) -> "_Batch":
        counts: Counter[Pair] = Counter()
        ranks = []
        for line in lines:
            counts[line.pair] += 1
            ranks.append(counts[line.pair])
        page_urls = {line.pair: line.page_url for line in lines if line.page_url}
        return cls(lines, counts, page_urls, ranks)

    def pair_columns(self) -> dict[str, list[Any]]:
        pairs = list(self.counts)
        return {
            "widget_ids": [w for w, _ in pairs], "visitor_ids": [v for _, v in pairs],
            "counts": [self.counts[p] for p in pairs], "page_urls": [self.page_urls.get(p) for p in pairs],
        }


async def post_visitor_lines(session: AsyncSession, lines: Sequence[VisitorLine]) -> list[Posted]:
    """Store many visitors' lines in one to three statements, opening chats as needed.

    What :func:`core.conversations.post_visitor_message` does per line, for a
    batch: every line of a visitor with an open chat takes the next seq there
    (several lines of one visitor get consecutive seqs, in order); a visitor
    with none gets a chat opened from their first line's context, and that
    line is answered ``started``.

    Raises :class:`LinesNotBulk` when a line's ``client_id`` is already
    stored (a resend) or a visitor has two open conversations; the
    transaction must then be rolled back.
    """
    if not lines:
        return []
    batch = _Batch.of(lines)
    dialect = session.get_bind().dialect.name
    statements = _many_statements(dialect)
    now = utcnow()
    stored: dict[tuple[int, int], Message] = {}  # (conversation id, seq) -> the stored line
    if statements.append is not None:
        chats = await _append_to_open_chats(session, statements.append, batch, stored, now)
    else:
        chats = await _reserve_in_open_chats(session, statements.reserve, batch, now)
    opened = await _open_conversations(session, statements.open, dialect, batch, skip=chats, now=now)
    chats.update(opened)

    placed: list[tuple[dict[str, Any], int]] = []  # per line: (its conversation row, its seq)
    columns: dict[str, list[Any]] = {"conversation_ids": [], "seqs": [], "authors": [], "texts": [], "client_ids": []}
    for line, rank in zip(lines, batch.ranks):
        row = chats[line.pair]
        seq = row["last_seq"] - batch.counts[line.pair] + rank
        placed.append((row, seq))
        if (row["id"], seq) not in stored:
            for name, value in zip(columns, (row["id"], seq, row["visitor_name"], line.text, line.client_id)):
                columns[name].append(value)
    if columns["seqs"]:
        inserted = await returned_rows(session, statements.insert, _bulk_params(dialect, columns, now))
        stored.update(((m.conversation_id, m.seq), m) for m in (detached(Message, r) for r in inserted))
    if len(stored) != len(lines):
        raise LinesNotBulk("a line was sent before (its client_id is stored)")
    # Each line gets its own conversation object, as post_visitor_message returns it:
    # ``last_seq`` is the line's own seq.
    return [
        Posted(
            detached(Conversation, {**row, "last_seq": seq}),
            stored[(row["id"], seq)],
            started=seq == 1 and (row["widget_id"], row["visitor_id"]) in opened,
        )
        for row, seq in placed
    ]


async def _reserve_in_open_chats(session: AsyncSession, statement: Any, batch: _Batch, now: Any) -> dict[Pair, dict[str, Any]]:
    """SQLite: reserve each line's seq in its visitor's open chat; the chats, with ``last_seq`` raised."""
    chats: dict[Pair, dict[str, Any]] = {}
    for row in await returned_rows(session, statement, _bulk_params("sqlite", batch.pair_columns(), now)):
        pair = (row["widget_id"], row["visitor_id"])
        if pair in chats:
            raise LinesNotBulk(f"visitor {row['visitor_id']} has more than one open conversation")
        chats[pair] = row
    return chats


async def _append_to_open_chats(
    session: AsyncSession, statement: Any, batch: _Batch, stored: dict[tuple[int, int], Message], now: Any
) -> dict[Pair, dict[str, Any]]:
    """PostgreSQL: reserve and insert the lines of visitors with an open chat in one round trip.

    Returns those chats (``last_seq`` raised) and adds the stored lines to ``stored``.
    """
    params = {
        **batch.pair_columns(),
        "line_widget_ids": [line.widget_id for line in batch.lines],
        "line_visitor_ids": [line.visitor_id for line in batch.lines],
        "line_ranks": batch.ranks,
        "texts": [line.text for line in batch.lines],
        "client_ids": [line.client_id for line in batch.lines],
        "now": now,
    }
    chats: dict[Pair, dict[str, Any]] = {}
    for row in (await session.execute(statement, params)).all():
        values = row._mapping
        chat = {name: values[f"c_{name}"] for name in _CONVERSATION_COLUMNS}
        pair = (chat["widget_id"], chat["visitor_id"])
        if chats.setdefault(pair, chat)["id"] != chat["id"]:
            raise LinesNotBulk(f"visitor {chat['visitor_id']} has more than one open conversation")
        if values["m_id"] is not None:
            message = detached(Message, {name: values[f"m_{name}"] for name in _MESSAGE_COLUMNS})
            stored[(message.conversation_id, message.seq)] = message
    if len(stored) != sum(batch.counts[pair] for pair in chats):
        raise LinesNotBulk("a line was sent before (its client_id is stored)")
    return chats


async def _open_conversations(
    session: AsyncSession, statement: Any, dialect: str, batch: _Batch, *, skip: dict[Pair, Any], now: Any
) -> dict[Pair, dict[str, Any]]:
    """Open one conversation for each visitor of the batch not in ``skip`` (no open chat), in one
    INSERT; its ``last_seq`` already counts the visitor's lines in the batch. The chat takes its
    first line's context and the last page seen, as lines written one by one leave it."""
    first: dict[Pair, VisitorContext] = {}
    for line in batch.lines:
        if line.pair not in skip and line.pair not in first:
            first[line.pair] = line.context
    if not first:
        return {}
    pairs = list(first)
    opened = await returned_rows(session, statement, _bulk_params(dialect, {
        "widget_ids": [w for w, _ in pairs],
        "visitor_ids": [v for _, v in pairs],
        "names": [first[p].name for p in pairs],
        "emails": [first[p].email for p in pairs],
        "page_urls": [batch.page_urls.get(p) for p in pairs],
        "page_titles": [first[p].page_title for p in pairs],
        "languages": [first[p].language for p in pairs],
        "timezones": [first[p].timezone for p in pairs],
        "counts": [batch.counts[p] for p in pairs],
    }, now))
    return {(row["widget_id"], row["visitor_id"]): row for row in opened}


async def store_in_chats(
    db: Database, lines: Sequence[VisitorLine], relays: Sequence[Relay], may_open: Collection[int] = ()
) -> list[tuple[Posted, int] | None]:
    """PostgreSQL: store the lines of visitors with an open chat, and their relays to
    ``relays``, in one statement that commits on its own, run by the driver
    (``Database.driver_statement``). A visitor with no open chat on a widget in
    ``may_open`` gets one opened by the same statement.

    ``may_open`` names the widgets whose chats owe nothing when they start but their
    lines' relays (no ``conversation.started`` webhook, no push): the statement
    plans only relays.

    Answers each line with (what ``post_visitor_message`` would return, how many
    relays it owes) once committed, or None when it was not stored: no open chat on
    a widget not in ``may_open``, a resend of a stored line, or a line repeating an
    earlier one's client_id in these lines. Those are for the transactional path, which
    handles each case.
    """
    taken: set[tuple[Pair, str]] = set()
    given: list[int] = []  # index in ``lines`` of each line sent
    for n, line in enumerate(lines):
        if line.client_id is not None:
            if (line.pair, line.client_id) in taken:
                continue  # a resend within the batch: after the first is stored, it is a duplicate
            taken.add((line.pair, line.client_id))
        given.append(n)
    sent = [lines[n] for n in given]
    params = {
        "widget_ids": [line.widget_id for line in sent],
        "visitor_ids": [line.visitor_id for line in sent],
        "texts": [line.text for line in sent],
        "client_ids": [line.client_id for line in sent],
        "page_urls": [line.page_url for line in sent],
        "may_open": [line.widget_id in may_open for line in sent],
        "names": [line.context.name for line in sent],
        "emails": [line.context.email for line in sent],
        "page_titles": [line.context.page_title for line in sent],
        "languages": [line.context.language for line in sent],
        "timezones": [line.context.timezone for line in sent],
        "relay_widget_ids": [r.widget_id for r in relays],
        "relay_binding_ids": [r.binding_id for r in relays],
        "relay_kinds": [r.kind for r in relays],
        "ordering_prefix": RELAY_ORDERING_PREFIX,
        "now": utcnow(),
    }
    per_widget = Counter(r.widget_id for r in relays)
    answers: list[tuple[Posted, int] | None] = [None] * len(lines)
    for values in await db.driver_statement(_many_statements("postgresql").store).fetch(params):
        if values["m_id"] is None:
            continue  # stored meanwhile by another process: the transactional path answers it
        message = detached(Message, {name: values[f"m_{name}"] for name in _MESSAGE_COLUMNS})
        chat = {name: values[f"c_{name}"] for name in _CONVERSATION_COLUMNS}
        conversation = detached(Conversation, {**chat, "last_seq": message.seq})
        posted = Posted(conversation, message, started=bool(values["started"]) and message.seq == 1)
        answers[given[values["line"] - 1]] = (posted, per_widget[conversation.widget_id])
    return answers
