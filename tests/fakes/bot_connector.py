"""A fake of the Microsoft services the Teams adapter talks to, on one local port.

* Bot Connector ``/v3/conversations`` REST API, as Teams serves it at a
  ``serviceUrl``: create a conversation in a channel (a new reply chain),
  send into a conversation or chain, reply to an activity, update an
  activity, read a member.
* The Entra ID token endpoint (``/{tenant}/oauth2/v2.0/token``, client
  credentials) the bot and Graph tokens come from.
* Microsoft Graph ``POST /v1.0/communications/getPresencesByUserId``.

Every call is recorded; failures (429 with Retry-After, 412, 502, 504, 403,
404) are answered on demand, so tests prove what the adapter does with them.
The real Agents SDK talks to it: tests put its URL in ``serviceUrl``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

THREAD_MARK = ";messageid="


@dataclass
class Call:
    method: str
    path: str
    kind: str  # create | send | reply | update | member | token | presence
    conversation_id: str | None = None
    activity_id: str | None = None
    body: Any = None
    authorization: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Planned:
    """A failure to answer instead of doing the work."""

    status: int
    kinds: frozenset[str]
    retry_after: str | None = None
    code: str = "Failure"
    times: int = 1


@dataclass
class Posted:
    """An activity as stored in a conversation of the fake."""

    id: str
    conversation_id: str
    body: dict[str, Any]
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current(self) -> dict[str, Any]:
        return self.updates[-1] if self.updates else self.body


class FakeBotConnector:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.activities: dict[str, Posted] = {}  # activity id -> activity
        self.chains: dict[str, list[str]] = {}  # "channel;messageid=root" -> activity ids, root first
        self.created: list[str] = []  # chains the bot opened with create_conversation, in order
        self.members: dict[str, dict[str, Any]] = {}  # user id (29:... or aad id) -> TeamsChannelAccount json
        self.presences: dict[str, dict[str, str]] = {}  # aad object id -> {availability, activity}
        self.gone_channels: set[str] = set()  # channels answering 404 (deleted)
        self.removed_from: set[str] = set()  # channels answering 403 (app removed from the team)
        self.require_auth = False  # refuse connector calls without the bearer token we issued
        self.issued_tokens: list[str] = []
        self._planned: list[Planned] = []
        self._ids = itertools.count(1_700_000_000_001)
        self.app = web.Application()
        self.app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        self.app.router.add_post("/v1.0/communications/getPresencesByUserId", self._presence)
        self.app.router.add_route("*", "/{prefix:.*}v3/conversations{rest:.*}", self._connector)

    # -- test controls ----------------------------------------------------
    def fail_next(
        self, status: int, *, kinds: tuple[str, ...] = ("create", "send", "reply", "update"), times: int = 1,
        retry_after: str | None = None, code: str = "Failure",
    ) -> None:
        """Answer the next ``times`` calls of ``kinds`` with ``status`` (429 may carry Retry-After)."""
        self._planned.append(Planned(status, frozenset(kinds), retry_after, code, times))

    def of_kind(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    def chain(self, thread_id: str) -> list[dict[str, Any]]:
        """The activities of a reply chain as they look now, root first."""
        return [self.activities[i].current for i in self.chains.get(thread_id, [])]

    def roots(self) -> list[str]:
        """The reply chains the bot opened (one per chat), oldest first."""
        return list(self.created)

    # -- handlers ---------------------------------------------------------
    def _planned_failure(self, kind: str) -> web.Response | None:
        for plan in self._planned:
            if kind in plan.kinds and plan.times > 0:
                plan.times -= 1
                if plan.times == 0:
                    self._planned.remove(plan)
                headers = {"Retry-After": plan.retry_after} if plan.retry_after is not None else None
                return _error(plan.status, plan.code, f"planned {plan.status}", headers)
        return None

    def _authorized(self, request: web.Request) -> bool:
        if not self.require_auth:
            return True
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.issued_tokens

    async def _token(self, request: web.Request) -> web.Response:
        form = parse_qs(await request.text())
        self.calls.append(Call("POST", request.path, "token", body={k: v[0] for k, v in form.items()}))
        if form.get("grant_type") != ["client_credentials"] or not form.get("client_secret"):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"token-{len(self.issued_tokens) + 1}"
        self.issued_tokens.append(token)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    async def _presence(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(
            Call("POST", request.path, "presence", body=body, authorization=request.headers.get("Authorization"))
        )
        failure = self._planned_failure("presence")
        if failure is not None:
            return failure
        if not self._authorized(request):
            return _error(401, "InvalidAuthenticationToken", "no or unknown token")
        ids = body.get("ids") or []
        if len(ids) > 650:
            return _error(400, "BadRequest", "at most 650 ids per request")
        value = [
            {"id": i, **self.presences.get(i, {"availability": "PresenceUnknown", "activity": "PresenceUnknown"})}
            for i in ids
        ]
        return web.json_response({"value": value})

    async def _connector(self, request: web.Request) -> web.Response:
        rest = request.match_info["rest"].strip("/")
        parts = rest.split("/") if rest else []
        auth = request.headers.get("Authorization")
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        if request.method == "POST" and not parts:
            return await self._create(request, body, auth)
        conversation_id = parts[0]
        if len(parts) == 2 and parts[1] == "activities" and request.method == "POST":
            kind, activity_id = "send", None
        elif len(parts) == 3 and parts[1] == "activities" and request.method == "POST":
            kind, activity_id = "reply", parts[2]
        elif len(parts) == 3 and parts[1] == "activities" and request.method == "PUT":
            kind, activity_id = "update", parts[2]
        elif len(parts) == 3 and parts[1] == "members" and request.method == "GET":
            kind, activity_id = "member", None
        else:
            return _error(404, "NotFound", f"no such operation {request.method} {request.path}")
        self.calls.append(Call(request.method, request.path, kind, conversation_id, activity_id, body, auth))
        failure = self._refusal(kind, conversation_id, request)
        if failure is not None:
            return failure
        if kind == "member":
            member = self.members.get(parts[2])
            return web.json_response(member) if member else _error(404, "MemberNotFoundInConversation", "no such member")
        if kind == "update":
            posted = self.activities.get(activity_id or "")
            if posted is None or not _same_channel(posted.conversation_id, conversation_id):
                return _error(404, "ActivityNotFound", "no such activity")
            posted.updates.append(body)
            return web.json_response({"id": activity_id})
        chain_id = _chain_of(conversation_id, self.activities.get(activity_id or ""))
        if kind == "reply" and chain_id is not None and chain_id not in self.chains:
            # A reply to a person's post (a command in a channel): that post opened the chain.
            self.chains[chain_id] = []
        if chain_id is not None and chain_id not in self.chains:
            return _error(404, "ConversationNotFound", "no such reply chain")
        new_id = str(next(self._ids))
        self.activities[new_id] = Posted(new_id, conversation_id, body)
        if chain_id is not None:
            self.chains[chain_id].append(new_id)
        return web.json_response({"id": new_id}, status=201)

    async def _create(self, request: web.Request, body: Any, auth: str | None) -> web.Response:
        channel = ((body or {}).get("channelData") or {}).get("channel", {}).get("id")
        self.calls.append(Call("POST", request.path, "create", channel, None, body, auth))
        failure = self._refusal("create", channel or "", request)
        if failure is not None:
            return failure
        if not channel or not (body or {}).get("activity"):
            return _error(400, "BadArgument", "channelData.channel.id and activity are required")
        new_id = str(next(self._ids))
        chain_id = f"{channel}{THREAD_MARK}{new_id}"
        self.activities[new_id] = Posted(new_id, chain_id, body["activity"])
        self.chains[chain_id] = [new_id]
        self.created.append(chain_id)
        return web.json_response({"id": chain_id, "activityId": new_id}, status=201)

    def _refusal(self, kind: str, conversation_id: str, request: web.Request) -> web.Response | None:
        failure = self._planned_failure(kind)
        if failure is not None:
            return failure
        if not self._authorized(request):
            return _error(401, "Unauthorized", "no or unknown bearer token")
        channel = conversation_id.split(THREAD_MARK, 1)[0]
        if channel in self.removed_from:
            return _error(403, "BotNotInConversationRoster", "the bot is not part of the conversation roster")
        if channel in self.gone_channels:
            return _error(404, "ConversationNotFound", "conversation not found")
        return None


def _chain_of(conversation_id: str, replied_to: Posted | None) -> str | None:
    if THREAD_MARK in conversation_id:
        return conversation_id
    if replied_to is not None and THREAD_MARK in replied_to.conversation_id:
        return replied_to.conversation_id
    return None


def _same_channel(a: str, b: str) -> bool:
    return a.split(THREAD_MARK, 1)[0] == b.split(THREAD_MARK, 1)[0]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


# -- activities as Teams posts them to /api/messages ---------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TEAM = "19:team-general@thread.tacv2"
CHANNEL = "19:support-channel@thread.tacv2"
BOT_ID = "28:deskbell-bot-id"
BOT_NAME = "deskbell"


@dataclass
class TeamsUser:
    name: str
    aad_object_id: str
    email: str
    id: str = ""  # the Bot Framework id (29:...)

    def __post_init__(self) -> None:
        self.id = self.id or f"29:1{self.aad_object_id.replace('-', '')[:20]}"

    def account(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "aadObjectId": self.aad_object_id}

    def member(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "aadObjectId": self.aad_object_id, "email": self.email,
            "userPrincipalName": self.email, "givenName": self.name.split()[0], "tenantId": TENANT,
        }


def _channel_data(channel: str = CHANNEL, channel_name: str = "Support", event_type: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "teamsChannelId": channel,
        "teamsTeamId": TEAM,
        "channel": {"id": channel, "name": channel_name},
        "team": {"id": TEAM, "name": "Acme"},
        "tenant": {"id": TENANT},
    }
    if event_type:
        data["eventType"] = event_type
    return data


def channel_message(
    service_url: str, user: TeamsUser, text: str, *, thread: str | None = None, activity_id: str | None = None,
    mention_bot: bool = False, channel: str = CHANNEL, value: Any = None,
) -> dict[str, Any]:
    """A channel post (``thread`` None: a new post, itself the root of a chain) or a reply in a chain."""
    activity_id = activity_id or str(next(_inbound_ids))
    conversation = thread or f"{channel}{THREAD_MARK}{activity_id}"
    entities: list[dict[str, Any]] = [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web"}]
    if mention_bot:
        mention = f"<at>{BOT_NAME}</at>"
        text = f"{mention} {text}"
        entities.append({"type": "mention", "text": mention, "mentioned": {"id": BOT_ID, "name": BOT_NAME}})
    activity: dict[str, Any] = {
        "type": "message",
        "id": activity_id,
        "timestamp": "2026-11-25T10:00:00.000Z",
        "localTimestamp": "2026-11-25T11:00:00.000+01:00",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": user.account(),
        "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": conversation},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "textFormat": "plain",
        "text": f"<p>{text}</p>" if text and not mention_bot else text,
        "entities": entities,
        "channelData": _channel_data(channel),
        "locale": "en-US",
    }
    if thread:
        activity["replyToId"] = thread.split(THREAD_MARK, 1)[1]
    if value is not None:
        activity["value"] = value
        activity["text"] = ""
    return activity


def personal_message(service_url: str, user: TeamsUser, text: str, *, activity_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "message",
        "id": activity_id or str(next(_inbound_ids)),
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": user.account(),
        "conversation": {"conversationType": "personal", "tenantId": TENANT, "id": f"a:1personal-{user.aad_object_id}"},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "text": text,
        "textFormat": "plain",
        "channelData": {"tenant": {"id": TENANT}},
    }


def conversation_update(service_url: str, event_type: str, *, channel: str = CHANNEL) -> dict[str, Any]:
    return {
        "type": "conversationUpdate",
        "id": f"f:{next(_inbound_ids)}",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": "29:admin"},
        "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": channel},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "channelData": _channel_data(channel, event_type=event_type),
    }


def installation_update(service_url: str, action: str) -> dict[str, Any]:
    return {
        "type": "installationUpdate",
        "action": action,
        "id": f"f:{next(_inbound_ids)}",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": "29:admin", "aadObjectId": "00000000-0000-0000-0000-0000000000aa"},
        "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": TEAM},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "channelData": {"team": {"id": TEAM, "name": "Acme"}, "tenant": {"id": TENANT}, "source": {"name": "message"}},
    }


def card_invoke(service_url: str, user: TeamsUser, thread: str, verb: str, conversation_id: int) -> dict[str, Any]:
    """An ``Action.Execute`` click (Universal Actions), sent as an ``adaptiveCard/action`` invoke."""
    return {
        "type": "invoke",
        "name": "adaptiveCard/action",
        "id": f"f:{next(_inbound_ids)}",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": user.account(),
        "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": thread},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "replyToId": thread.split(THREAD_MARK, 1)[1],
        "value": {"action": {"type": "Action.Execute", "verb": verb, "data": {"conversation_id": conversation_id}}, "trigger": "manual"},
        "channelData": _channel_data(),
    }


_inbound_ids = itertools.count(1_800_000_000_001)
