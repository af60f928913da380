"""Slack messages and views deskbell posts: Block Kit built from plain data. Pure.

Every builder returns the ``text`` fallback (notifications, screen
readers) together with the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.models import Conversation, Message, OfflineMessage

from adapters.slack.text import escape, truncate

if TYPE_CHECKING:
    from adapters.channel_relay import ThreadReply

CLAIM = "deskbell_claim"
CLOSE = "deskbell_close"
TAKE_OVER = "deskbell_take_over"
OFFLINE_HANDLED = "deskbell_offline_handled"
HOME_DUTY = "deskbell_home_duty"
HOME_STAY = "deskbell_home_stay"
SECTION_MAX = 2900  # Slack caps section text at 3000 characters


Blocks = list[dict[str, Any]]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_MAX)}}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(p, 2900)} for p in parts if p]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in escape(text).splitlines() or [""])


def visitor_label(conv: Conversation) -> str:
    return conv.visitor_name or (conv.visitor_email.split("@", 1)[0] if conv.visitor_email else "Visitor")


def visitor_local_time(tz_name: str | None, at: datetime) -> str | None:
    """The visitor's wall-clock time at ``at`` ("14:05 Europe/Lisbon"), if their zone is known."""
    if not tz_name:
        return None
    try:
        local = at.astimezone(ZoneInfo(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return f"{local:%H:%M} {tz_name} ({local:%a})"


def thread_url(channel_id: str, ts: str) -> str:
    """A link that opens the thread in any workspace (Slack redirects it)."""
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def root_message(
    conv: Conversation, widget_name: str, *, first_text: str | None, claimed_by: str | None, assistant: bool = False
) -> tuple[str, Blocks]:
    """The message that opens a conversation's thread: who, where, and Claim/Close.

    ``assistant``: the AI assistant is (or may start) answering this chat, so
    the root offers "Take over" to silence it without writing to the visitor.
    """
    assistant = assistant and conv.status == "open" and not claimed_by
    who = f"*{escape(visitor_label(conv))}*"
    if conv.visitor_email:
        who += f" <mailto:{escape(conv.visitor_email)}|{escape(conv.visitor_email)}>"
    facts = []
    if conv.page_url:
        title = escape(conv.page_title or conv.page_url)
        facts.append(f":link: <{escape(conv.page_url)}|{truncate(title, 150)}>")
    local = visitor_local_time(conv.timezone, conv.created_at)
    if local:
        facts.append(f":clock3: {local}")
    if conv.language:
        facts.append(f":speech_balloon: {escape(conv.language)}")
    facts.append(f":house: {escape(widget_name)}")
    if conv.status == "closed":
        state = ":white_check_mark: Closed" + (f" · was claimed by {escape(claimed_by)}" if claimed_by else "")
    elif claimed_by:
        state = f":raising_hand: Claimed by *{escape(claimed_by)}*"
    elif assistant:
        state = ":robot_face: The assistant is answering · *Take over* (or reply in the thread) to answer yourself"
    else:
        state = ":bell: Waiting for someone to answer · reply in the thread"
    blocks: Blocks = [_section(f":wave: New chat from {who}")]
    if first_text:
        blocks.append(_section(_quote(first_text)))
    blocks.append(_context(" · ".join(facts)))
    blocks.append(_context(state))
    if conv.status == "open":
        buttons = [] if claimed_by else [_button("Claim", CLAIM, str(conv.id), "primary")]
        if assistant:
            buttons.append(_button("Take over", TAKE_OVER, str(conv.id)))
        buttons.append(_button("Close", CLOSE, str(conv.id), "danger"))
        blocks.append({"type": "actions", "block_id": f"conv_{conv.id}", "elements": buttons})
    fallback = f"New chat from {visitor_label(conv)}" + (f": {truncate(first_text, 200)}" if first_text else "")
    return fallback, blocks


def relay_message(message: Message | ThreadReply) -> dict[str, Any]:
    """chat.postMessage arguments (beyond channel and thread) for a relayed line.

    Visitor lines show under the visitor's name; lines agents wrote elsewhere
    (the console) are marked with the agent's name so the thread reads true.
    """
    text = escape(message.text)
    author = escape(message.author or "")
    if message.sender == "visitor":
        return {"text": text, "username": message.author or "Visitor", "icon_emoji": ":bust_in_silhouette:"}
    if message.sender == "agent" and message.internal:
        return {"text": f":memo: *Note* by {author or 'an agent'}: {text}"}
    if message.sender == "agent":
        return {"text": f"*{author or 'Agent'}* (console): {text}"}
    if message.sender == "bot":  # the assistant's answer, as the visitor read it
        return {"text": f":robot_face: *{author or 'Assistant'}* (AI): {text}"}
    return {"text": f"_{text}_"}


def take_over_note(agent_name: str) -> str:
    """Said in the thread when someone presses "Take over"."""
    return f":raising_hand: *{escape(agent_name)}* took over from the assistant: it stays quiet in this chat now. Reply in the thread to answer the visitor."


QUIET_REASONS = {
    "taken_over": "someone already took over",
    "agent_replied": "someone from the team already replied",
    "claimed": "the chat was claimed",
}


def assistant_quiet_text(status: str | None, reason: str | None) -> str:
    """Told (ephemerally) to whoever presses "Take over" when the assistant is already quiet."""
    if status == "handed_off":
        why = "it handed the chat to the team"
    else:
        why = QUIET_REASONS.get(reason or "", "it is not answering this chat")
    return f"The assistant is already quiet here: {why}. Reply in the thread to answer the visitor."


def offline_post(row: OfflineMessage, widget_name: str, *, handled_by: str | None = None) -> tuple[str, Blocks]:
    """An offline message in the channel, with "Mark handled" until someone does."""
    who = escape(row.name or row.email)
    head = f":envelope: *Offline message* on {escape(widget_name)} from *{who}* <mailto:{escape(row.email)}|{escape(row.email)}>"
    blocks: Blocks = [_section(head), _section(_quote(row.message))]
    if row.page_url:
        blocks.append(_context(f":link: {escape(row.page_url)}"))
    if row.status == "handled":
        blocks.append(_context(":white_check_mark: Handled" + (f" by {escape(handled_by)}" if handled_by else "")))
    else:
        blocks.append(
            {"type": "actions", "block_id": f"offline_{row.id}", "elements": [_button("Mark handled", OFFLINE_HANDLED, str(row.id), "primary")]}
        )
    return f"Offline message from {row.name or row.email}: {truncate(row.message, 200)}", blocks


@dataclass(frozen=True)
class WidgetReport:
    """One bound widget as ``/chat-status`` shows it."""

    name: str
    key: str
    online: bool
    reason: str | None
    mode: str
    on_duty: tuple[str, ...]
    open_chats: int


REASONS = {
    "disabled": "the widget is disabled",
    "outside_schedule": "outside opening hours",
    "no_agent_available": "nobody is available (go on duty with /chat-online)",
}


def status_report(rows: list[WidgetReport]) -> str:
    if not rows:
        return "No widget is bound to a channel of this workspace yet: run `/chat-setup` in a channel."
    lines = []
    for r in rows:
        state = ":large_green_circle: *online*" if r.online else f":red_circle: *offline*: {REASONS.get(r.reason or '', r.reason)}"
        duty = ", ".join(escape(n) for n in r.on_duty) if r.on_duty else "nobody"
        lines.append(
            f"*{escape(r.name)}* (`{r.key}`): {state} · shows {r.mode}\n"
            f"    on duty: {duty} · open chats: {r.open_chats}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class OpenChat:
    label: str
    url: str | None


def home_view(*, name: str, on_duty: bool, stay_available: bool, available: bool, chats: list[OpenChat]) -> dict[str, Any]:
    """The App Home tab: duty and stay-available with buttons, then open chats."""
    duty = ":large_green_circle: You are *on duty*" if on_duty else ":white_circle: You are *off duty*"
    if on_duty and not available:
        duty += " (away: your session expired; any action in Slack brings you back)"
    stay = (
        ":pushpin: *Stay available* is on: you count as available even when away from Slack"
        if stay_available
        else ":zzz: *Stay available* is off: you count as available while active in Slack"
    )
    blocks: Blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"deskbell · {truncate(name, 100)}"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": duty},
            "accessory": _button("Go offline" if on_duty else "Go online", HOME_DUTY, "off" if on_duty else "on", None if on_duty else "primary"),
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": stay},
            "accessory": _button("Turn off" if stay_available else "Turn on", HOME_STAY, "off" if stay_available else "on"),
        },
        {"type": "divider"},
        _section(f"*Open chats* ({len(chats)})"),
    ]
    for chat in chats[:40]:  # a view holds at most 100 blocks
        blocks.append(_section(f"<{chat.url}|{escape(chat.label)}>" if chat.url else escape(chat.label)))
    if not chats:
        blocks.append(_context("No open chats right now."))
    return {"type": "home", "blocks": blocks}
