"""Conversations and their messages.

A conversation exists only once a visitor sends a real message (a page view
stores nothing). Every message gets the next per-conversation ``seq`` inside
the transaction that stores it, so a widget that reconnects with
``resume_after`` receives every later message in order and none twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core import validation as v
from core.clock import iso, utcnow
from core.driver_sql import returned_rows
from core.errors import Conflict, NotFound, ValidationFailed
from core.models import Agent, Conversation, Message, Widget, detached
from core.relay import MAX_TEXT, classify_agent_text

SENDERS = ("visitor", "agent", "bot", "system")


@dataclass(frozen=True)
class VisitorContext:
    """What the widget tells us about where the visitor is."""

    page_url: str | None = None
    page_title: str | None = None
    language: str | None = None
    timezone: str | None = None
    name: str | None = None
    email: str | None = None


@dataclass
class Posted:
    conversation: Conversation
    message: Message
    duplicate: bool = False  # the same client_id was stored before: nothing new
    started: bool = False  # this message opened the conversation


def clean_text(text: Any) -> str:
    try:
        cleaned = v.text(text, max_len=MAX_TEXT)
    except v.FieldError as exc:
        raise ValidationFailed.of({"text": str(exc)}) from exc
    assert cleaned is not None
    return cleaned


async def current_conversation(
    session: AsyncSession, widget_id: int, visitor_id: str
) -> Conversation | None:
    """The visitor's open conversation on this widget, if any."""
    query = (
        select(Conversation)
        .where(
            Conversation.widget_id == widget_id,
            Conversation.visitor_id == visitor_id,
            Conversation.status == "open",
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def get_conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    conv = await session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation with id {conversation_id}")
    return conv


async def _next_seq(session: AsyncSession, conv: Conversation) -> int:
    """Reserve the next seq; the row update also serializes writers of one conversation."""
    now = utcnow()
    table = Conversation.__table__
    seq = (
        await session.execute(
            update(table)
            .where(table.c.id == conv.id)
            .values(last_seq=table.c.last_seq + 1, updated_at=now)
            .returning(table.c.last_seq)
        )
    ).scalar_one()
    set_committed_value(conv, "last_seq", seq)
    set_committed_value(conv, "updated_at", now)
    return int(seq)


async def _append(session: AsyncSession, conv: Conversation, **fields: Any) -> Message:
    message = Message(conversation_id=conv.id, seq=await _next_seq(session, conv), **fields)
    session.add(message)
    await session.flush()
    return message


async def _by_client_id(session: AsyncSession, conv: Conversation, client_id: str) -> Message | None:
    query = select(Message).where(Message.conversation_id == conv.id, Message.client_id == client_id)
    return (await session.execute(query)).scalar_one_or_none()


def clean_client_id(client_id: Any) -> str | None:
    if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= 64):
        raise ValidationFailed.of({"client_id": "must be a string of 1 to 64 characters"})
    return client_id


def _reserve_statement() -> Any:
    table = Conversation.__table__
    newest_open = (
        select(table.c.id)
        .where(
            table.c.widget_id == bindparam("p_widget_id"),
            table.c.visitor_id == bindparam("p_visitor_id"),
            table.c.status == "open",
        )
        .order_by(table.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    # ``status = 'open'`` again on the row itself: PostgreSQL re-checks it once the
    # row is locked, so a chat closed meanwhile is not written to.
    return (
        update(table)
        .where(table.c.id == newest_open, table.c.status == "open")
        .values(
            last_seq=table.c.last_seq + 1,
            updated_at=bindparam("p_now"),
            page_url=func.coalesce(bindparam("p_page_url", type_=table.c.page_url.type), table.c.page_url),
        )
        .returning(*table.c)
    )


def _insert_statement(dialect: str, *, on_conflict: bool) -> Any:
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    query = insert(Message.__table__).values(
        {name: bindparam(f"p_{name}") for name in ("conversation_id", "seq", "sender", "author", "text", "internal", "client_id", "created_at")}
    )
    if on_conflict:
        query = query.on_conflict_do_nothing(index_elements=["conversation_id", "client_id"])
    return query.returning(*Message.__table__.c)


# Built once: constructing these per line cost about as much as running them.
_STATEMENTS: dict[str, Any] = {}


def _statement(name: str, dialect: str) -> Any:
    key = f"{name}:{dialect}"
    query = _STATEMENTS.get(key)
    if query is None:
        if name == "reserve":
            query = _reserve_statement()
        elif name == "open":
            table = Conversation.__table__
            names = [c.name for c in table.c if c.name not in ("id", "claimed_by", "closed_at")]
            query = table.insert().values({n: bindparam(f"p_{n}") for n in names}).returning(*table.c)
        else:
            query = _insert_statement(dialect, on_conflict=name == "insert_once")
        _STATEMENTS[key] = query
    return query


def _one_or_none(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if len(rows) > 1:
        raise RuntimeError(f"expected at most one row, got {len(rows)}")
    return rows[0] if rows else None


async def _reserve_in_open_conversation(
    session: AsyncSession, widget_id: int, visitor_id: str, *, page_url: str | None
) -> Conversation | None:
    """Find the visitor's open conversation and reserve its next seq, in one statement.

    ``last_seq`` of the returned conversation is the reserved seq. The row
    update also serializes the writers of one conversation (PostgreSQL row lock).
    """
    query = _statement("reserve", session.get_bind().dialect.name)
    params = {"p_widget_id": widget_id, "p_visitor_id": visitor_id, "p_now": utcnow(), "p_page_url": page_url or None}
    return detached(Conversation, _one_or_none(await returned_rows(session, query, params)))


async def _insert_visitor_line(
    session: AsyncSession, conv: Conversation, seq: int, text: str, client_id: str | None
) -> Message | None:
    """INSERT the message; None (and nothing stored) when its client_id is already stored."""
    query = _statement("insert_once" if client_id is not None else "insert", session.get_bind().dialect.name)
    params = {
        "p_conversation_id": conv.id,
        "p_seq": seq,
        "p_sender": "visitor",
        "p_author": conv.visitor_name,
        "p_text": text,
        "p_internal": False,
        "p_client_id": client_id,
        "p_created_at": utcnow(),
    }
    return detached(Message, _one_or_none(await returned_rows(session, query, params)))


async def post_visitor_message(
    session: AsyncSession,
    widget: Widget,
    visitor_id: str,
    text: Any,
    *,
    client_id: str | None,
    context: VisitorContext = VisitorContext(),
) -> Posted:
    """Store a visitor's message, opening a conversation on the first one.

    Idempotent per ``client_id``: a widget that resends after a lost ack gets
    the stored message back instead of a duplicate. Two statements for a
    line in an open chat (reserve the seq, insert), as this runs for every
    line a visitor types.
    """
    cleaned = clean_text(text)
    client_id = clean_client_id(client_id)
    conv = await _reserve_in_open_conversation(session, widget.id, visitor_id, page_url=context.page_url)
    if conv is None:
        now = utcnow()
        values = {
            "widget_id": widget.id,
            "visitor_id": visitor_id,
            "visitor_name": context.name,
            "visitor_email": context.email,
            "page_url": context.page_url,
            "page_title": context.page_title,
            "language": context.language,
            "timezone": context.timezone,
            "status": "open",
            "last_seq": 1,
            "created_at": now,
            "updated_at": now,
        }
        query = _statement("open", session.get_bind().dialect.name)
        [row] = await returned_rows(session, query, {f"p_{k}": v for k, v in values.items()})
        conv = detached(Conversation, row)
        message = await _insert_visitor_line(session, conv, 1, cleaned, client_id)
        assert message is not None  # a new conversation has no client_id yet
        return Posted(conv, message, started=True)
    seq = conv.last_seq
    message = await _insert_visitor_line(session, conv, seq, cleaned, client_id)
    if message is not None:
        return Posted(conv, message)
    # A resend of a stored line: give the seq back (this transaction holds the
    # conversation, so nobody took a later one) and answer with the stored message.
    table = Conversation.__table__
    await session.execute(update(table).where(table.c.id == conv.id).values(last_seq=table.c.last_seq - 1))
    set_committed_value(conv, "last_seq", seq - 1)
    existing = await _by_client_id(session, conv, client_id or "")
    assert existing is not None
    return Posted(conv, existing, duplicate=True)


async def post_agent_message(
    session: AsyncSession,
    conv: Conversation,
    text: Any,
    *,
    agent: Agent | None = None,
    author: str | None = None,
    avatar_url: str | None = None,
) -> tuple[Message | None, bool]:
    """Store an agent's line. Returns the stored message (None for ``!close``)
    and whether the conversation was closed by it."""
    line = classify_agent_text(clean_text(text))
    if line.kind == "close":
        await close_conversation(session, conv)
        return None, True
    if conv.status != "open":
        raise Conflict("this conversation is closed")
    message = await _append(
        session,
        conv,
        sender="agent",
        author=author or (agent.name if agent else None),
        avatar_url=avatar_url or (agent.avatar_url if agent else None),
        agent_id=agent.id if agent else None,
        text=line.text,
        internal=line.kind == "note",
    )
    return message, False


async def post_system_message(session: AsyncSession, conv: Conversation, text: str, sender: str = "system") -> Message:
    return await _append(session, conv, sender=sender, text=text)


async def claim_conversation(session: AsyncSession, conv: Conversation, agent: Agent) -> Conversation:
    """Claim for ``agent``; a second click by anyone else is refused, not overwritten."""
    table = Conversation.__table__
    result = await session.execute(
        update(table)
        .where(table.c.id == conv.id, table.c.claimed_by.is_(None), table.c.status == "open")
        .values(claimed_by=agent.id, updated_at=utcnow())
    )
    await session.refresh(conv)
    if result.rowcount == 0 and conv.claimed_by != agent.id:
        if conv.status != "open":
            raise Conflict("this conversation is closed")
        raise Conflict("this conversation is already claimed")
    return conv


async def close_conversation(session: AsyncSession, conv: Conversation) -> bool:
    """Close once; True if this call closed it (double clicks are harmless)."""
    table = Conversation.__table__
    now = utcnow()
    result = await session.execute(
        update(table)
        .where(table.c.id == conv.id, table.c.status == "open")
        .values(status="closed", closed_at=now, updated_at=now)
    )
    await session.refresh(conv)
    return result.rowcount == 1


async def messages_after(
    session: AsyncSession,
    conversation_id: int,
    after_seq: int,
    *,
    include_internal: bool = False,
    limit: int = 1000,
    up_to_seq: int | None = None,
) -> list[Message]:
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
        .order_by(Message.seq)
        .limit(limit)
    )
    if up_to_seq is not None:
        query = query.where(Message.seq <= up_to_seq)
    if not include_internal:
        query = query.where(Message.internal.is_(False))
    return list((await session.execute(query)).scalars())


async def conversation_last_seq(session: AsyncSession, conversation_id: int) -> int:
    query = select(Conversation.last_seq).where(Conversation.id == conversation_id)
    return int((await session.execute(query)).scalar_one())


async def list_conversations(
    session: AsyncSession,
    *,
    widget_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Conversation]:
    query = select(Conversation).order_by(Conversation.id.desc()).limit(limit + 1)
    if widget_id is not None:
        query = query.where(Conversation.widget_id == widget_id)
    if status is not None:
        query = query.where(Conversation.status == status)
    if before_id is not None:
        query = query.where(Conversation.id < before_id)
    return list((await session.execute(query)).scalars())


def message_frame(message: Message) -> dict[str, Any]:
    """A message as the widget protocol shows it to the visitor.

    A visitor's own message carries its ``client_id`` so each tab can match
    it with the copy it is showing as pending.
    """
    frame: dict[str, Any] = {
        "type": "message",
        "conversation_id": message.conversation_id,
        "id": message.id,
        "seq": message.seq,
        "from": message.sender,
        "author": message.author,
        "avatar_url": message.avatar_url,
        "text": message.text,
        "ts": iso(message.created_at),
    }
    if message.sender == "visitor" and message.client_id:
        frame["client_id"] = message.client_id
    return frame


def message_update_frame(message: Message) -> dict[str, Any]:
    """Tells the widget to replace the text of a message it already shows."""
    return {"type": "message_update", "conversation_id": message.conversation_id, "id": message.id, "seq": message.seq, "text": message.text}


def message_delete_frame(message: Message) -> dict[str, Any]:
    """Tells the widget to remove a message it already shows."""
    return {"type": "message_delete", "conversation_id": message.conversation_id, "id": message.id, "seq": message.seq}


async def edit_agent_message(session: AsyncSession, message: Message, text: Any) -> bool:
    """Replace an agent's line after it was edited where it was written.

    Only agent messages can change; a note stays a note (an edit never
    exposes an internal line). True when the stored text changed.
    """
    if message.sender != "agent":
        raise Conflict("only agent messages can be edited")
    cleaned = clean_text(text)
    if cleaned == message.text:
        return False
    message.text = cleaned
    await session.flush()
    return True


async def withdraw_agent_message(session: AsyncSession, message: Message) -> bool:
    """An agent deleted a relayed line: hide it from the visitor, keep it for the team.

    The row stays (as an internal line) so the seq sequence has no hole and
    the team's record is complete. True when the visitor could see it before.
    """
    if message.sender != "agent":
        raise Conflict("only agent messages can be deleted")
    if message.internal:
        return False
    message.internal = True
    await session.flush()
    return True


def message_to_json(message: Message) -> dict[str, Any]:
    """A message as agents and the API see it, notes included."""
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "from": message.sender,
        "author": message.author,
        "avatar_url": message.avatar_url,
        "agent_id": message.agent_id,
        "text": message.text,
        "internal": message.internal,
        "created_at": iso(message.created_at),
    }


def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "widget_id": conv.widget_id,
        "visitor_id": conv.visitor_id,
        "visitor_name": conv.visitor_name,
        "visitor_email": conv.visitor_email,
        "page_url": conv.page_url,
        "page_title": conv.page_title,
        "language": conv.language,
        "timezone": conv.timezone,
        "status": conv.status,
        "claimed_by": conv.claimed_by,
        "last_seq": conv.last_seq,
        "created_at": iso(conv.created_at),
        "updated_at": iso(conv.updated_at),
        "closed_at": iso(conv.closed_at),
    }
