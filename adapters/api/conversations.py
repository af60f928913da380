"""Conversations and their messages, read-only: the chat itself happens in Slack/Teams.

Messages page forward by ``seq`` (oldest first), the order a transcript is
read and the same ``seq`` the widget protocol resumes from; agents' internal
notes are included and marked ``internal: true``.
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Operation, Param, Reply, ref
from adapters.api.pages import list_response, paged
from adapters.api.schemas import CONVERSATION_STATUSES
from adapters.http import services
from core.conversations import (
    conversation_to_json,
    get_conversation,
    list_conversations,
    message_to_json,
    messages_after,
)
from core.errors import ValidationFailed

WHAT = "conversation"
STATUS = Param("status", {"enum": list(CONVERSATION_STATUSES)}, "Only conversations with this status.")
AFTER = Param(
    "after",
    {"type": "integer", "minimum": 0},
    "Only messages with a `seq` greater than this (resume after the last one you have).",
)
MESSAGES_CURSOR = Param(
    "cursor", {"type": "string"}, "The `next_cursor` of the previous page (instead of `after`)."
)


def _encode_after(seq: int) -> str:
    raw = json.dumps({"after": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_after(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        after = data["after"]
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise TypeError
        return after
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationFailed.of({"cursor": "is not a cursor this API returned"}) from exc


def _after(request: web.Request) -> int:
    after = params.integer(request, "after")
    cursor = request.query.get("cursor")
    if cursor and after is not None:
        raise ValidationFailed.of({"cursor": "give either cursor or after, not both"})
    if cursor:
        return _decode_after(cursor)
    return after or 0


async def list_all(request: web.Request) -> web.Response:
    limit, before = params.limit(request), params.cursor(request)
    status = params.choice(request, "status", CONVERSATION_STATUSES)
    async with services(request).db.read() as session:
        widget_id = await params.widget_filter(request, session)
        rows = await list_conversations(session, widget_id=widget_id, status=status, before_id=before, limit=limit)
    return paged(rows, limit, conversation_to_json)


async def get(request: web.Request) -> web.Response:
    conversation_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        conv = await get_conversation(session, conversation_id)
    return web.json_response(conversation_to_json(conv))


async def list_messages(request: web.Request) -> web.Response:
    conversation_id = params.path_id(request, WHAT)
    limit, after = params.limit(request), _after(request)
    async with services(request).db.read() as session:
        await get_conversation(session, conversation_id)
        rows = await messages_after(session, conversation_id, after, include_internal=True, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_after(rows[-1].seq) if more else None
    return list_response((message_to_json(m) for m in rows), next_cursor)


_ITEM = "/api/v1/conversations/{id}"
_TAG = "conversations"

OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/conversations", list_all, "listConversations", "List conversations, newest first", _TAG,
        Reply(200, ref("ConversationList"), "A page of conversations."),
        params=(params.WIDGET_FILTER, STATUS, params.LIMIT, params.CURSOR),
    ),
    Operation(
        "GET", _ITEM, get, "getConversation", "Get a conversation", _TAG,
        Reply(200, ref("Conversation"), "The conversation."),
    ),
    Operation(
        "GET", _ITEM + "/messages", list_messages, "listConversationMessages",
        "A conversation's messages, oldest first", _TAG,
        Reply(200, ref("MessageList"), "A page of messages in `seq` order, internal notes included."),
        params=(AFTER, params.LIMIT, MESSAGES_CURSOR),
    ),
]
