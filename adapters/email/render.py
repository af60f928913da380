"""Emails as MIME messages: plain text plus HTML, pure functions of their data.

Every message gets a ``Message-ID`` derived from its outbox row, so a retry
after a crash repeats the same id and mail clients show the repeat once.
Header values come from visitors, so line breaks are removed before they
reach a header.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.clock import parse_instant
from core.digests import digest_text, digest_title
from core.links import absolute, offline_message_path
from core.mail import ChatEmail, Line


@dataclass(frozen=True)
class Envelope:
    """What every email shares: who sends it, its stable id and when it was made."""

    sender: str  # "deskbell <bell@example.com>" or a bare address
    message_id: str
    base_url: str
    date: datetime


def message_id_for(outbox_id: int, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "deskbell.invalid"
    return f"<deskbell.{outbox_id}@{domain}>"


def _header(value: str) -> str:
    return " ".join(value.split())


def _message(env: Envelope, to: str, subject: str, text: str, html_body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = env.sender
    msg["To"] = to
    msg["Subject"] = _header(subject)
    msg["Date"] = format_datetime(env.date)
    msg["Message-ID"] = env.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    msg.set_content(text)
    msg.add_alternative(html_body, subtype="html")
    return msg


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>"
        "<body style=\"font-family:system-ui,-apple-system,Segoe UI,sans-serif;line-height:1.5;color:#111\">"
        f"{body}</body></html>"
    )


def _paragraphs(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.splitlines()) or "&nbsp;"


def _when(at: datetime, zone: str | None = None) -> str:
    tz: Any = timezone.utc
    if zone:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = timezone.utc
    local = at.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "UTC")


# ---------------------------------------------------------------- team: offline message


def offline_notification(payload: dict[str, Any], env: Envelope) -> EmailMessage:
    """The team's copy of an offline message; "Reply" in a mail client answers the visitor."""
    m, widget = payload["offline_message"], payload["widget"]
    name, email = m.get("name"), m["email"]
    who = f"{name} <{email}>" if name else email
    link = absolute(env.base_url, offline_message_path(m["id"]))
    sent = _when(parse_instant(m["created_at"]))
    subject = f"[{widget['name']}] Offline message from {name or email}"
    text = "\n".join(
        [
            f"{who} left a message on {widget['name']} ({sent}).",
            *([f"Page: {m['page_url']}"] if m.get("page_url") else []),
            "",
            m["message"],
            "",
            "Reply to this email to answer the visitor.",
            f"Open it in deskbell: {link}",
        ]
    )
    page = f"<p>Page: <a href=\"{html.escape(m['page_url'])}\">{html.escape(m['page_url'])}</a></p>" if m.get("page_url") else ""
    body = (
        f"<p><strong>{html.escape(who)}</strong> left a message on {html.escape(widget['name'])} ({html.escape(sent)}).</p>"
        f"{page}"
        f"<blockquote style=\"border-left:3px solid #2563eb;margin:0;padding:0 12px\">{_paragraphs(m['message'])}</blockquote>"
        "<p>Reply to this email to answer the visitor.</p>"
        f"<p><a href=\"{html.escape(link)}\">Open it in deskbell</a></p>"
    )
    msg = _message(env, payload["to"], subject, text, _page(subject, body))
    msg["Reply-To"] = formataddr((_header(name or ""), email))
    return msg


# ---------------------------------------------------------------- visitor: replies and transcripts


def _author(line: Line, chat: ChatEmail) -> str:
    if line.sender == "visitor":
        return chat.visitor_name or "You"
    return line.author or chat.widget["name"]


def _lines_text(chat: ChatEmail, zone: str | None) -> list[str]:
    out = []
    for line in chat.lines:
        out += [f"{_author(line, chat)} ({_when(line.at, zone)}):", line.text, ""]
    return out


def _lines_html(chat: ChatEmail, zone: str | None) -> str:
    return "".join(
        f"<p><strong>{html.escape(_author(line, chat))}</strong> "
        f"<span style=\"color:#666\">{html.escape(_when(line.at, zone))}</span><br>{_paragraphs(line.text)}</p>"
        for line in chat.lines
    )


def _visitor_message(chat: ChatEmail, env: Envelope, subject: str, intro: str) -> EmailMessage:
    greeting = f"Hi {chat.visitor_name}," if chat.visitor_name else "Hi,"
    back = f"You can continue the chat on {chat.page_url}" if chat.page_url else ""
    text = "\n".join([greeting, "", intro, "", *_lines_text(chat, None), back]).rstrip() + "\n"
    back_html = (
        f"<p>You can continue the chat on <a href=\"{html.escape(chat.page_url)}\">{html.escape(chat.page_url)}</a></p>"
        if chat.page_url
        else ""
    )
    body = f"<p>{html.escape(greeting)}</p><p>{html.escape(intro)}</p>{_lines_html(chat, None)}{back_html}"
    msg = _message(env, chat.to, subject, text, _page(subject, body))
    if chat.reply_to:
        msg["Reply-To"] = ", ".join(chat.reply_to)
    return msg


def visitor_reply(chat: ChatEmail, env: Envelope) -> EmailMessage:
    name = chat.widget["name"]
    return _visitor_message(chat, env, f"{name}: a reply to your message", f"{name} answered you after you left the chat:")


def transcript(chat: ChatEmail, env: Envelope) -> EmailMessage:
    name = chat.widget["name"]
    return _visitor_message(chat, env, f"Your chat with {name}", f"Here is a copy of your chat with {name}:")


# ---------------------------------------------------------------- managers: digest


def digest(content: dict[str, Any], to: str, env: Envelope) -> EmailMessage:
    title = digest_title(content)
    rows = "".join(
        "<tr>"
        f"<td style=\"padding:4px 8px\">{'<strong>new</strong>' if i['status'] == 'new' else 'handled'}</td>"
        f"<td style=\"padding:4px 8px\">{html.escape(i['name'] or '')} &lt;{html.escape(i['email'])}&gt;</td>"
        f"<td style=\"padding:4px 8px\"><a href=\"{html.escape(absolute(env.base_url, i['link_path']))}\">"
        f"{html.escape(i['first_line'])}</a></td>"
        "</tr>"
        for i in content["items"]
    )
    more = f"<p>… and {content['more']} more</p>" if content["more"] else ""
    body = f"<h2 style=\"font-size:18px\">{html.escape(title)}</h2><table>{rows}</table>{more}"
    return _message(env, to, title, digest_text(content, env.base_url) + "\n", _page(title, body))
