"""JSON Schemas of every API body, as Python data (OpenAPI 3.1 = JSON Schema 2020-12).

They describe exactly what the ``*_to_json`` functions in ``core`` produce and
what ``core``'s validation accepts; responses are closed
(``additionalProperties: false``), so a field added in core without being
documented here fails the contract tests instead of drifting silently.
"""

from __future__ import annotations

from adapters.api.operation import Schema, nullable, ref
from adapters.api.pages import list_schema
from core.conversations import SENDERS
from core.offline import STATUSES as OFFLINE_STATUSES
from core.schedule import DAYS

CONVERSATION_STATUSES = ("open", "closed")
STATUS_REASONS = ("disabled", "outside_schedule", "no_agent_available")
STATUS_MODES = ("live", "ai", "form", "hidden")

ID: Schema = {"type": "integer", "minimum": 1}
INSTANT: Schema = {"type": "string", "format": "date-time"}
HEX_COLOUR: Schema = {"type": "string", "pattern": "^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"}
HTTP_URL: Schema = {"type": "string", "format": "uri", "pattern": "^https?://"}


def _text(max_len: int) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_len}


def _closed(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object with exactly these properties; all required unless told otherwise."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties) if required is None else required,
        "properties": properties,
    }


# ---------------------------------------------------------------- schedule

_TIME = {"type": "string", "pattern": "^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"}
TIME_RANGE: Schema = {
    "type": "array",
    "description": 'Local wall-clock ["HH:MM", "HH:MM"]; an end at or before the start ends the next day, '
    '"24:00" is allowed as an end only.',
    "prefixItems": [_TIME, _TIME],
    "items": False,
    "minItems": 2,
}
_RANGES = {"type": "array", "items": ref("TimeRange")}
_DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}

SCHEDULE_EXCEPTION: Schema = {
    "description": "A date whose hours replace the weekday's: closed all day, or other hours.",
    "oneOf": [
        _closed({"date": _DATE, "closed": {"const": True}}),
        _closed({"date": _DATE, "hours": _RANGES}),
    ],
}

SCHEDULE: Schema = {
    "type": "object",
    "description": "Business hours in one IANA time zone. A widget without a schedule is always within hours.",
    "additionalProperties": False,
    "required": ["timezone"],
    "properties": {
        "timezone": {"type": "string", "minLength": 1, "examples": ["Europe/Berlin"]},
        "weekly": {
            "type": "object",
            "additionalProperties": False,
            "properties": {day: _RANGES for day in DAYS},
        },
        "exceptions": {"type": "array", "items": ref("ScheduleException")},
    },
}

# ---------------------------------------------------------------- widgets

COLORS: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"primary": HEX_COLOUR, "text": HEX_COLOUR},
}

WIDGET_SETTINGS: dict[str, Schema] = {
    "name": _text(200),
    "enabled": {"type": "boolean"},
    "offline_message": _text(2000),
    "online_tab_text": _text(100),
    "offline_tab_text": _text(100),
    "hide_when_offline": {"type": "boolean"},
    "offline_form": {"type": "boolean"},
    "ai_enabled": {"type": "boolean"},
    "ai_always": {"type": "boolean"},
    "allowed_origins": {
        "type": "array",
        "maxItems": 50,
        "items": {"type": "string"},
        "description": 'Page origins allowed to embed the widget, like "https://shop.example"; "*" allows any.',
    },
    "notify_emails": {"type": "array", "maxItems": 20, "items": {"type": "string", "format": "email"}},
    "session_timeout_s": {"type": "integer", "minimum": 60, "maximum": 7 * 86400},
    "colors": ref("Colors"),
    "position": {"enum": ["right", "left"]},
    "schedule": nullable(ref("Schedule")),
    "retention_days": nullable(
        {
            "type": "integer",
            "minimum": 1,
            "maximum": 3650,
            "description": "Days to keep offline messages and closed conversations; null keeps them.",
        }
    ),
}

WIDGET: Schema = _closed(
    {
        "id": ID,
        "key": {"type": "string", "description": "Public key, used in the embed snippet."},
        **WIDGET_SETTINGS,
        "created_at": INSTANT,
        "updated_at": INSTANT,
    }
)
WIDGET_CREATE: Schema = _closed(WIDGET_SETTINGS, required=["name"])
WIDGET_UPDATE: Schema = _closed(WIDGET_SETTINGS, required=[])

WIDGET_STATUS: Schema = _closed(
    {
        "online": {"type": "boolean"},
        "reason": {"enum": [*STATUS_REASONS, None], "description": "Why the widget is offline; null when online."},
        "mode": {"enum": list(STATUS_MODES), "description": "What the widget shows."},
        "next_change_at": nullable(INSTANT),
        "agents_available": {"type": "integer", "minimum": 0},
        "next_open_at": nullable(INSTANT),
    }
)

# ---------------------------------------------------------------- agents

AGENT_FIELDS: dict[str, Schema] = {
    "name": _text(200),
    "email": {"type": "string", "format": "email", "maxLength": 320},
    "on_duty": {"type": "boolean"},
    "stay_available": {
        "type": "boolean",
        "description": "Available while on duty even without a live session.",
    },
    "avatar_url": nullable({**HTTP_URL, "maxLength": 1000}),
    "widget_ids": nullable(
        {"type": "array", "items": ID, "maxItems": 1000, "description": "Widgets answered; null means all."}
    ),
}

AGENT: Schema = _closed(
    {
        "id": ID,
        **{k: AGENT_FIELDS[k] for k in ("name", "email", "on_duty", "stay_available")},
        "last_seen_at": nullable(INSTANT),
        "available": {
            "type": "boolean",
            "description": "On duty and either stay_available or seen within the default session timeout.",
        },
        "avatar_url": AGENT_FIELDS["avatar_url"],
        "widget_ids": AGENT_FIELDS["widget_ids"],
        "created_at": INSTANT,
    }
)
AGENT_CREATE: Schema = _closed(AGENT_FIELDS, required=["name", "email"])
AGENT_UPDATE: Schema = _closed(AGENT_FIELDS, required=[])

# ---------------------------------------------------------------- offline messages

OFFLINE_MESSAGE: Schema = _closed(
    {
        "id": ID,
        "widget_id": ID,
        "name": nullable({"type": "string"}),
        "email": {"type": "string", "format": "email"},
        "message": {"type": "string"},
        "page_url": nullable({"type": "string"}),
        "status": {"enum": list(OFFLINE_STATUSES)},
        "created_at": INSTANT,
        "handled_at": nullable(INSTANT),
    }
)
OFFLINE_MESSAGE_UPDATE: Schema = _closed({"status": {"enum": list(OFFLINE_STATUSES)}})

# ---------------------------------------------------------------- conversations

CONVERSATION: Schema = _closed(
    {
        "id": ID,
        "widget_id": ID,
        "visitor_id": {"type": "string"},
        "visitor_name": nullable({"type": "string"}),
        "visitor_email": nullable({"type": "string"}),
        "page_url": nullable({"type": "string"}),
        "page_title": nullable({"type": "string"}),
        "language": nullable({"type": "string"}),
        "timezone": nullable({"type": "string"}),
        "status": {"enum": list(CONVERSATION_STATUSES)},
        "claimed_by": nullable(ID),
        "last_seq": {"type": "integer", "minimum": 0},
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "closed_at": nullable(INSTANT),
    }
)

MESSAGE: Schema = _closed(
    {
        "id": ID,
        "conversation_id": ID,
        "seq": {"type": "integer", "minimum": 1},
        "from": {"enum": list(SENDERS)},
        "author": nullable({"type": "string"}),
        "avatar_url": nullable({"type": "string"}),
        "agent_id": nullable(ID),
        "text": {"type": "string"},
        "internal": {"type": "boolean", "description": "An agents' note, never shown to the visitor."},
        "created_at": INSTANT,
    }
)

# ---------------------------------------------------------------- errors

ERROR: Schema = _closed(
    {
        "error": _closed(
            {
                "code": {"type": "string", "examples": ["validation_failed"]},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "For validation errors: each bad field or parameter and what is wrong with it.",
                },
            },
            required=["code", "message"],
        )
    }
)

COMPONENTS: dict[str, Schema] = {
    "Widget": WIDGET,
    "WidgetCreate": WIDGET_CREATE,
    "WidgetUpdate": WIDGET_UPDATE,
    "Colors": COLORS,
    "Schedule": SCHEDULE,
    "ScheduleException": SCHEDULE_EXCEPTION,
    "TimeRange": TIME_RANGE,
    "WidgetStatus": WIDGET_STATUS,
    "Agent": AGENT,
    "AgentCreate": AGENT_CREATE,
    "AgentUpdate": AGENT_UPDATE,
    "OfflineMessage": OFFLINE_MESSAGE,
    "OfflineMessageUpdate": OFFLINE_MESSAGE_UPDATE,
    "Conversation": CONVERSATION,
    "Message": MESSAGE,
    "Error": ERROR,
    "WidgetList": list_schema("Widget"),
    "AgentList": list_schema("Agent"),
    "OfflineMessageList": list_schema("OfflineMessage"),
    "ConversationList": list_schema("Conversation"),
    "MessageList": list_schema("Message"),
}
