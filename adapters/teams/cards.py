"""Adaptive Cards deskbell posts in Teams, built from plain data. Pure.

Visitor-supplied strings go into ``TextRun`` elements, which Teams shows
verbatim (no Markdown), so a visitor cannot style the card or disguise a
link. Buttons are ``Action.Submit``: Teams delivers their ``data`` as the
``value`` of a message activity in the same reply chain, on every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.teams.text import truncate

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.4"
ACTION_KEY = "deskbell"  # marks Action.Submit data as ours
CLAIM, CLOSE, HANDLED, TAKE_OVER = "claim", "close", "handled", "take_over"
TEXT_MAX = 3000

Card = dict[str, Any]


@dataclass(frozen=True)
class ChatFacts:
    """What the root card of a chat shows; read from the conversation by the relay."""

    conversation_id: int
    widget_name: str
    visitor_name: str | None
    visitor_email: str | None
    page_url: str | None
    page_title: str | None
    timezone: str | None
    started_at: datetime
    status: str  # open | closed
    claimed_by: str | None = None
    first_text: str | None = None
    assistant: bool = False  # the AI assistant is (or may start) answering: offer "Take over"


@dataclass(frozen=True)
class CardAction:
    verb: str  # claim | close | take_over | handled
    target_id: int  # a conversation id, or an offline message id for "handled"


def visitor_label(name: str | None, email: str | None) -> str:
    return name or (email.split("@", 1)[0] if email else "Visitor")


def local_time(tz_name: str | None, at: datetime) -> str | None:
    """The visitor's wall-clock time at ``at`` ("14:05 Europe/Lisbon (Tue)"), if their zone is known."""
    if not tz_name:
        return None
    try:
        local = at.astimezone(ZoneInfo(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return f"{local:%H:%M} {tz_name} ({local:%a})"


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": truncate(text, TEXT_MAX), **style}


def _fact(label: str, value: str) -> dict[str, Any]:
    return {"type": "RichTextBlock", "spacing": "None", "inlines": [_run(f"{label}: ", weight="Bolder"), _run(value)]}


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> Card:
    card: Card = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION, "body": body, "msteams": {"width": "Full"}}
    if actions:
        card["actions"] = actions
    return card


def _submit(title: str, verb: str, target_key: str, target_id: int) -> dict[str, Any]:
    return {"type": "Action.Submit", "title": title, "data": {ACTION_KEY: verb, target_key: target_id}}


def chat_status_line(status: str, claimed_by: str | None, assistant: bool = False) -> str:
    if status != "open":
        return f"Closed (handled by {claimed_by})" if claimed_by else "Closed"
    if claimed_by:
        return f"Claimed by {claimed_by}"
    return "The assistant is answering (Take over, or reply, to answer yourself)" if assistant else "Waiting for an agent"


def root_card(facts: ChatFacts) -> Card:
    """The post that opens a chat's reply chain: who, where, when, and Claim/Close (and Take over
    while the assistant may be answering)."""
    assistant = facts.assistant and facts.status == "open" and facts.claimed_by is None
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"New chat on {truncate(facts.widget_name, 100)}",
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        _fact("Visitor", visitor_label(facts.visitor_name, facts.visitor_email)),
    ]
    if facts.visitor_email:
        body.append(_fact("Email", facts.visitor_email))
    if facts.page_url:
        page = f"{facts.page_title} ({facts.page_url})" if facts.page_title else facts.page_url
        body.append(_fact("Page", page))
    when = local_time(facts.timezone, facts.started_at)
    if when:
        body.append(_fact("Local time", when))
    body.append(_fact("Status", chat_status_line(facts.status, facts.claimed_by, assistant)))
    if facts.first_text:
        body.append({"type": "RichTextBlock", "separator": True, "inlines": [_run(facts.first_text)]})
    body.append(
        {
            "type": "TextBlock",
            "text": "Reply in this thread to answer. Start a line with note: or ! for the team only; !close ends the chat.",
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    actions: list[dict[str, Any]] = []
    if facts.status == "open":
        if facts.claimed_by is None:
            actions.append(_submit("Claim", CLAIM, "conversation_id", facts.conversation_id))
        if assistant:
            actions.append(_submit("Take over", TAKE_OVER, "conversation_id", facts.conversation_id))
        actions.append(_submit("Close", CLOSE, "conversation_id", facts.conversation_id))
    return _card(body, actions)


def root_summary(facts: ChatFacts) -> str:
    """The notification/fallback text of the root post."""
    who = visitor_label(facts.visitor_name, facts.visitor_email)
    return truncate(f"New chat on {facts.widget_name} from {who}", 200)


@dataclass(frozen=True)
class OfflineFacts:
    offline_message_id: int
    widget_name: str
    name: str | None
    email: str
    message: str
    page_url: str | None
    status: str  # new | handled


def offline_card(facts: OfflineFacts) -> Card:
    """An offline message posted to the channel, with a "Mark handled" button."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": f"Offline message on {truncate(facts.widget_name, 100)}", "weight": "Bolder", "size": "Medium", "wrap": True},
        _fact("From", f"{facts.name} <{facts.email}>" if facts.name else facts.email),
    ]
    if facts.page_url:
        body.append(_fact("Page", facts.page_url))
    body.append({"type": "RichTextBlock", "separator": True, "inlines": [_run(facts.message)]})
    actions = [] if facts.status == "handled" else [_submit("Mark handled", HANDLED, "offline_message_id", facts.offline_message_id)]
    if facts.status == "handled":
        body.append(_fact("Status", "Handled"))
    return _card(body, actions)


@dataclass(frozen=True)
class AgentStatus:
    name: str
    on_duty: bool
    stay_available: bool
    available: bool
    widgets: tuple[tuple[str, bool, str | None], ...] = ()  # (name, online, reason)


REASONS = {
    "disabled": "disabled",
    "outside_schedule": "outside opening hours",
    "no_agent_available": "no agent available",
}


def status_card(status: AgentStatus) -> Card:
    """The answer to ``status`` (and to ``online``/``offline``/``stay``): where the agent stands."""
    duty = "On duty" if status.on_duty else "Off duty"
    here = "available to visitors" if status.available else "not available to visitors"
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": f"{duty}, {here}", "weight": "Bolder", "wrap": True},
        _fact("Stay available", "on (no session timeout)" if status.stay_available else "off"),
    ]
    for name, online, reason in status.widgets:
        body.append(_fact(name, "online" if online else f"offline ({REASONS.get(reason or '', reason or 'offline')})"))
    body.append(
        {"type": "TextBlock", "text": "Commands: online, offline, status, stay on, stay off", "isSubtle": True, "size": "Small", "wrap": True}
    )
    return _card(body, [])


def status_summary(status: AgentStatus) -> str:
    return f"{status.name}: {'on duty' if status.on_duty else 'off duty'}, {'available' if status.available else 'not available'}"


def take_over_note(agent_name: str) -> str:
    """Said in the reply chain when someone presses "Take over" (plain text; the bot escapes it)."""
    return f"{agent_name} took over from the assistant: it stays quiet in this chat now. Reply here to answer the visitor."


QUIET_REASONS = {
    "taken_over": "someone already took over",
    "agent_replied": "someone from the team already replied",
    "claimed": "the chat was claimed",
}


def assistant_quiet_text(status: str | None, reason: str | None) -> str:
    """The answer to "Take over" when the assistant is already quiet in the chat."""
    why = "it handed the chat to the team" if status == "handed_off" else QUIET_REASONS.get(reason or "", "it is not answering this chat")
    return f"The assistant is already quiet here: {why}."


def attachment(card: Card) -> dict[str, Any]:
    return {"contentType": CARD_CONTENT_TYPE, "content": card}


def parse_card_action(value: Any) -> CardAction | None:
    """Our button's data from an ``Action.Submit`` message value or an ``adaptiveCard/action`` invoke.

    Returns None for anything that is not one of our buttons, so other apps'
    cards and malformed payloads are ignored rather than failing the turn.
    """
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("action"), dict):  # Action.Execute (Universal Actions) invoke
        action = value["action"]
        data = action.get("data") if isinstance(action.get("data"), dict) else {}
        value = {ACTION_KEY: action.get("verb") or data.get(ACTION_KEY), **data}
    verb = value.get(ACTION_KEY)
    key = "offline_message_id" if verb == HANDLED else "conversation_id"
    target = value.get(key)
    if verb not in (CLAIM, CLOSE, TAKE_OVER, HANDLED):
        return None
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    if not isinstance(target, int) or isinstance(target, bool) or target < 1:
        return None
    return CardAction(verb, target)
