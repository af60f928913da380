"""JSON Schemas of the delivery endpoints: webhooks, deliveries, notification settings.

Closed like the rest of the API's schemas, so a field added in core without
being documented here fails the contract tests. Registered into the
document's components by ``routes.py``.
"""

from __future__ import annotations

from adapters.api.operation import Schema, nullable, ref
from adapters.api.pages import list_schema
from adapters.api.schemas import HTTP_URL, ID, INSTANT
from core.schedule import DAYS
from core.webhooks import EVENT_TYPES

DELIVERY_STATUSES = ("pending", "delivering", "done", "dead")


def _closed(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties) if required is None else required,
        "properties": properties,
    }


_EVENTS: Schema = {
    "type": "array",
    "items": {"enum": list(EVENT_TYPES)},
    "minItems": 1,
    "uniqueItems": True,
    "description": "Events this endpoint receives; all of them when left out at creation.",
}
_URL: Schema = {**HTTP_URL, "maxLength": 2000}

_ENDPOINT_FIELDS: dict[str, Schema] = {
    "id": ID,
    "widget_id": ID,
    "url": _URL,
    "events": _EVENTS,
    "enabled": {"type": "boolean", "description": "False after the receiver answered 410 Gone, or when switched off."},
    "disabled_reason": nullable({"type": "string"}),
    "created_at": INSTANT,
    "updated_at": INSTANT,
}

WEBHOOK_ENDPOINT: Schema = _closed(_ENDPOINT_FIELDS)
WEBHOOK_ENDPOINT_CREATED: Schema = _closed(
    {
        **_ENDPOINT_FIELDS,
        "secret": {
            "type": "string",
            "pattern": "^whsec_[A-Za-z0-9+/=]+$",
            "description": "The signing secret (Standard Webhooks). Shown only in this answer: store it now.",
        },
    }
)
WEBHOOK_ENDPOINT_CREATE: Schema = _closed({"url": _URL, "events": _EVENTS}, required=["url"])
WEBHOOK_ENDPOINT_UPDATE: Schema = _closed({"url": _URL, "events": _EVENTS, "enabled": {"type": "boolean"}}, required=[])

DELIVERY_ATTEMPT: Schema = _closed(
    {
        "number": {"type": "integer", "minimum": 1},
        "started_at": INSTANT,
        "finished_at": INSTANT,
        "ok": {"type": "boolean"},
        "status_code": nullable({"type": "integer", "description": "HTTP status or SMTP reply code."}),
        "detail": nullable({"type": "string"}),
    }
)

DELIVERY: Schema = _closed(
    {
        "id": ID,
        "kind": {"type": "string", "examples": ["email.offline_message", "webhook.send", "slack.offline_post"]},
        "status": {"enum": list(DELIVERY_STATUSES)},
        "attempts": {"type": "integer", "minimum": 0},
        "next_attempt_at": nullable(INSTANT),
        "last_error": nullable({"type": "string"}),
        "created_at": INSTANT,
        "done_at": nullable(INSTANT),
        "attempt_log": {"type": "array", "items": ref("DeliveryAttempt")},
        "ref_type": nullable({"type": "string", "description": "What caused it: offline_message, conversation, digest..."}),
        "ref_id": nullable(ID),
        "destination": nullable({"type": "string", "description": "Where it goes, in a few words."}),
    }
)

_DAYS: Schema = {"type": "array", "items": {"enum": list(DAYS)}, "minItems": 1, "maxItems": 7, "uniqueItems": True}
_NOTIFY_FIELDS: dict[str, Schema] = {
    "digest_enabled": {"type": "boolean"},
    "digest_time": {"type": "string", "pattern": "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$", "description": "Local time, HH:MM."},
    "digest_days": _DAYS,
    "digest_timezone": nullable(
        {"type": "string", "description": "IANA zone; null uses the widget's schedule zone, else UTC."}
    ),
    "digest_channel": {"type": "boolean", "description": "Post digests to the widget's bound channels."},
    "digest_channel_id": nullable(
        {
            "type": "string",
            "maxLength": 200,
            "description": "A managers' channel on the bound platform for digests (the bot must be in it); null posts in the chats channel.",
        }
    ),
    "digest_email": {"type": "boolean", "description": "Email digests to the widget's notify_emails."},
    "transcript_email": {"type": "boolean", "description": "Email the visitor the chat when it closes."},
}
NOTIFICATION_SETTINGS: Schema = _closed(
    {
        "widget_id": ID,
        **_NOTIFY_FIELDS,
        "effective_timezone": {"type": "string"},
        "next_digest_at": nullable(INSTANT),
    }
)
NOTIFICATION_SETTINGS_UPDATE: Schema = _closed(_NOTIFY_FIELDS, required=[])

AGENT_PUSHOVER: Schema = _closed(
    {
        "agent_id": ID,
        "configured": {"type": "boolean"},
        "user_key_hint": nullable({"type": "string", "description": "The key's last 4 characters."}),
    }
)
AGENT_PUSHOVER_UPDATE: Schema = _closed({"user_key": {"type": "string", "pattern": "^[A-Za-z0-9]{30}$"}})

SCHEMAS: dict[str, Schema] = {
    "WebhookEndpoint": WEBHOOK_ENDPOINT,
    "WebhookEndpointCreated": WEBHOOK_ENDPOINT_CREATED,
    "WebhookEndpointCreate": WEBHOOK_ENDPOINT_CREATE,
    "WebhookEndpointUpdate": WEBHOOK_ENDPOINT_UPDATE,
    "WebhookEndpointList": list_schema("WebhookEndpoint"),
    "Delivery": DELIVERY,
    "DeliveryAttempt": DELIVERY_ATTEMPT,
    "DeliveryList": list_schema("Delivery"),
    "NotificationSettings": NOTIFICATION_SETTINGS,
    "NotificationSettingsUpdate": NOTIFICATION_SETTINGS_UPDATE,
    "AgentPushover": AGENT_PUSHOVER,
    "AgentPushoverUpdate": AGENT_PUSHOVER_UPDATE,
}
