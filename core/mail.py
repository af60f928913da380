"""Which emails a change owes, and what goes into them (as plain data).

Rows are planned in the change's transaction; the email adapter turns the
data into MIME and sends it. One row per recipient, so a bad address fails
alone and the attempt log says which one it was.

An agent's reply reaches a visitor who left by email: every visible agent
line in a conversation with a visitor email plans a row due
``VISITOR_REPLY_DELAY_S`` later. When it comes due the handler asks
:func:`visitor_reply_to_send`, which skips it if the visitor has written in
the chat since (so they were there and saw it) or if a later agent line will
send its own email (which then carries both lines). The widget protocol
stores no read receipts, so a visitor who reads silently for that long gets
the email too: a duplicate is cheap, a lost answer is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Conversation, Digest, Message, Widget, WidgetNotifySettings
from core.outbox import enqueue, outbox_row

KIND_OFFLINE = "email.offline_message"
KIND_VISITOR_REPLY = "email.visitor_reply"
KIND_TRANSCRIPT = "email.transcript"
KIND_DIGEST = "email.digest"
KINDS = (KIND_OFFLINE, KIND_VISITOR_REPLY, KIND_TRANSCRIPT, KIND_DIGEST)
VISITOR_REPLY_DELAY_S = 120.0


def _widget(widget: Widget) -> dict[str, Any]:
    return {"id": widget.id, "key": widget.key, "name": widget.name}


def visitor_email_key(conversation_id: int) -> str:
    """Emails to one visitor go out in order: replies before the transcript."""
    return f"visitor_email:{conversation_id}"


def offline_notification_rows(widget: Widget, message: dict[str, Any]) -> list[dict[str, Any]]:
    """One email per address in the widget's ``notify_emails``; Reply-To is the visitor.

    ``message`` is the stored message as JSON (``offline_message_to_json``).
    As outbox columns (``core.outbox.insert_rows``), so a batch of form
    submissions writes all its emails in one INSERT, with no ORM row each.
    """
    return [
        outbox_row(KIND_OFFLINE, {"to": address, "widget": _widget(widget), "offline_message": message}, ref=("offline_message", message["id"]))
        for address in widget.notify_emails or []
    ]


def plan_visitor_reply(session: AsyncSession, conv: Conversation, message: Message, *, delay_s: float = VISITOR_REPLY_DELAY_S) -> int:
    if not conv.visitor_email or message.internal or message.sender != "agent":
        return 0
    enqueue(
        session,
        KIND_VISITOR_REPLY,
        {"to": conv.visitor_email, "conversation_id": conv.id, "message_id": message.id},
        ordering_key=visitor_email_key(conv.id),
        ref=("conversation", conv.id),
        delay_s=delay_s,
    )
    return 1


async def notify_settings(session: AsyncSession, widget_id: int) -> WidgetNotifySettings | None:
    return await session.get(WidgetNotifySettings, widget_id)


async def plan_transcript(session: AsyncSession, conv: Conversation) -> int:
    """The whole chat to the visitor when it closes, if the widget asks for it."""
    settings = await notify_settings(session, conv.widget_id)
    if settings is None or not settings.transcript_email or not conv.visitor_email:
        return 0
    enqueue(
        session,
        KIND_TRANSCRIPT,
        {"to": conv.visitor_email, "conversation_id": conv.id},
        ordering_key=visitor_email_key(conv.id),
        ref=("conversation", conv.id),
    )
    return 1


def plan_digest_emails(session: AsyncSession, widget: Widget, digest: Digest) -> int:
    for address in widget.notify_emails or []:
        enqueue(session, KIND_DIGEST, {"to": address, "digest_id": digest.id}, ref=("digest", digest.id))
    return len(widget.notify_emails or [])


# ---------------------------------------------------------------- what to send


@dataclass(frozen=True)
class Line:
    sender: str
    author: str | None
    text: str
    at: datetime


@dataclass(frozen=True)
class ChatEmail:
    """A visitor-facing email: the lines to show and where to continue."""

    to: str
    widget: dict[str, Any]
    conversation_id: int
    visitor_name: str | None
    page_url: str | None
    lines: list[Line] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)  # the team's addresses, so "Reply" reaches people


def _line(m: Message) -> Line:
    return Line(m.sender, m.author, m.text, m.created_at)


async def _visible_messages(session: AsyncSession, conv_id: int, *, after_seq: int = 0, up_to_seq: int | None = None) -> list[Message]:
    query = (
        select(Message)
        .where(Message.conversation_id == conv_id, Message.internal.is_(False), Message.seq > after_seq)
        .order_by(Message.seq)
    )
    if up_to_seq is not None:
        query = query.where(Message.seq <= up_to_seq)
    return list((await session.execute(query)).scalars())


async def _chat_email(session: AsyncSession, conv: Conversation, to: str, lines: list[Line]) -> ChatEmail:
    widget = await session.get(Widget, conv.widget_id)
    assert widget is not None
    return ChatEmail(
        to=to,
        widget=_widget(widget),
        conversation_id=conv.id,
        visitor_name=conv.visitor_name,
        page_url=conv.page_url,
        lines=lines,
        reply_to=list(widget.notify_emails or []),
    )


async def visitor_reply_to_send(session: AsyncSession, payload: dict[str, Any]) -> ChatEmail | str:
    """The reply email owed now, or why none is (a short reason for the attempt log)."""
    conv = await session.get(Conversation, payload["conversation_id"])
    message = await session.get(Message, payload["message_id"])
    if conv is None or message is None:
        return "skipped: the conversation was deleted"
    newer = select(func.max(Message.seq)).where(
        Message.conversation_id == conv.id, Message.seq > message.seq, Message.internal.is_(False)
    )
    last_visitor = (
        await session.execute(newer.where(Message.sender == "visitor"))
    ).scalar_one_or_none()
    if last_visitor is not None:
        return "skipped: the visitor answered in the chat, so they saw the reply"
    if (await session.execute(newer.where(Message.sender == "agent"))).scalar_one_or_none() is not None:
        return "skipped: a later reply's email carries this one"
    if conv.status == "closed":
        settings = await notify_settings(session, conv.widget_id)
        if settings is not None and settings.transcript_email:
            return "skipped: the transcript email carries this reply"
    before = (
        await session.execute(
            select(func.max(Message.seq)).where(
                Message.conversation_id == conv.id, Message.sender == "visitor", Message.seq < message.seq
            )
        )
    ).scalar_one_or_none() or 0
    lines = [_line(m) for m in await _visible_messages(session, conv.id, after_seq=before, up_to_seq=message.seq) if m.sender == "agent"]
    return await _chat_email(session, conv, payload["to"], lines)


async def transcript_to_send(session: AsyncSession, payload: dict[str, Any]) -> ChatEmail | str:
    conv = await session.get(Conversation, payload["conversation_id"])
    if conv is None:
        return "skipped: the conversation was deleted"
    lines = [_line(m) for m in await _visible_messages(session, conv.id)]
    return await _chat_email(session, conv, payload["to"], lines)
