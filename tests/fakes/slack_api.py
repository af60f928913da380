"""A local fake of Slack, for tests: the Web API over real HTTP/JSON, Socket Mode,
``response_url`` hooks, and helpers that sign inbound requests exactly as Slack does.

The real ``AsyncWebClient`` is pointed at it (``base_url=fake.api_url``).
Every call is recorded; 429s with ``Retry-After`` and Slack error codes can
be queued per method to prove how the service reacts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

TEAM_ID = "T0DESK"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
SIGNING_SECRET = "test-signing-secret-8f3a"
BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int = 200


@dataclass
class Planned:
    """A canned answer for the next call(s) of a method."""

    status: int = 200
    error: str | None = None
    retry_after: float | None = None


@dataclass
class FakeSlack:
    team_id: str = TEAM_ID
    tokens: set[str] = field(default_factory=lambda: {BOT_TOKEN})
    calls: list[Call] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    presence: dict[str, str] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    planned: dict[str, list[Planned]] = field(default_factory=dict)
    oauth_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_url: str = ""
    socket_frames: list[dict[str, Any]] = field(default_factory=list)  # what Socket Mode clients sent us
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _socket_ready: asyncio.Event = field(default_factory=asyncio.Event)

    # -- set-up -----------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/socket", self._socket)
        return app

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def response_url(self, name: str = "hook") -> str:
        return f"{self.base_url}/response/{name}"

    def add_user(self, user_id: str, name: str, *, email: str | None = None, bot: bool = False, presence: str = "active") -> dict[str, Any]:
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name.lower().replace(" ", "."),
            "real_name": name,
            "is_bot": bot,
            "profile": {
                "real_name": name,
                "display_name": name,
                "email": email,
                "image_72": f"https://avatars.example/{user_id}_72.png",
                "image_192": f"https://avatars.example/{user_id}_192.png",
            },
        }
        self.users[user_id] = user
        self.presence[user_id] = presence
        return user

    def add_channel(self, channel_id: str, name: str, *, private: bool = False, member: bool = False, archived: bool = False) -> None:
        self.channels[channel_id] = {"name": name, "is_private": private, "is_member": member, "is_archived": archived}

    def plan(self, method: str, *answers: Planned) -> None:
        """Queue answers for the next calls of ``method`` (then it behaves normally again)."""
        self.planned.setdefault(method, []).extend(answers)

    def rate_limit(self, method: str, retry_after: float = 1, times: int = 1) -> None:
        self.plan(method, *[Planned(status=429, error="ratelimited", retry_after=retry_after)] * times)

    def fail(self, method: str, error: str, times: int = 1, status: int = 200) -> None:
        self.plan(method, *[Planned(status=status, error=error)] * times)

    # -- queries for assertions --------------------------------------------
    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages currently in Slack (as last updated), oldest first."""
        found = [m for (c, _ts), m in self.messages.items() if channel in (None, c)]
        return sorted(found, key=lambda m: float(m["ts"]))

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.posts(channel) if m.get("thread_ts") == thread_ts]

    # -- the Web API ----------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        call = Call(method, args, token)
        self.calls.append(call)
        queued = self.planned.get(method)
        if queued:
            answer = queued.pop(0)
            call.status = answer.status
            headers = {"Retry-After": f"{answer.retry_after:g}"} if answer.retry_after is not None else None
            return web.json_response({"ok": False, "error": answer.error}, status=answer.status, headers=headers)
        if method == "oauth.v2.access":
            return self._oauth_access(args, request)
        if method == "apps.connections.open":
            if token != APP_TOKEN:
                return self._error("invalid_auth")
            return web.json_response({"ok": True, "url": self.base_url.replace("http", "ws", 1) + "/socket"})
        if token not in self.tokens:
            return self._error("not_authed" if token is None else "invalid_auth")
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return self._error("unknown_method")
        return web.json_response({"ok": True, **handler(args)})

    @staticmethod
    def _error(code: str) -> web.Response:
        return web.json_response({"ok": False, "error": code})

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://deskbell-test.slack.com/", "team": "Deskbell Test", "user": "deskbell",
                "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _channel_or_raise(self, channel: str) -> dict[str, Any]:
        info = self.channels.get(channel)
        if info is None or (info["is_private"] and not info["is_member"]):
            raise _SlackError("channel_not_found")
        return info

    def _post_check(self, args: dict[str, Any]) -> str:
        channel = str(args.get("channel"))
        info = self._channel_or_raise(channel)
        if info["is_archived"]:
            raise _SlackError("is_archived")
        if not info["is_member"]:
            raise _SlackError("not_in_channel")
        return channel

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._post_check(args)
        ts = self._next_ts()
        blocks = args.get("blocks")
        message = {
            "ts": ts,
            "text": args.get("text"),
            "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks,
            "thread_ts": args.get("thread_ts"),
            "username": args.get("username"),
            "bot_id": BOT_ID,
            "channel": channel,
        }
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._post_check(args)
        key = (channel, str(args.get("ts")))
        if key not in self.messages:
            raise _SlackError("message_not_found")
        blocks = args.get("blocks")
        self.messages[key].update(text=args.get("text"), blocks=json.loads(blocks) if isinstance(blocks, str) else blocks)
        return {"channel": channel, "ts": key[1], "text": args.get("text")}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._post_check(args)
        return {"message_ts": self._next_ts()}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        info = self._channel_or_raise(channel)
        return {"channel": {"id": channel, **info, "is_channel": not info["is_private"], "is_group": info["is_private"], "is_im": False}}

    def _conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        info = self._channel_or_raise(channel)
        if info["is_private"]:
            raise _SlackError("method_not_supported_for_channel_type")
        info["is_member"] = True
        return {"channel": {"id": channel, **info}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": user}

    def _users_getPresence(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user"))
        if user not in self.users:
            raise _SlackError("user_not_found")
        return {"presence": self.presence.get(user, "away"), "online": self.presence.get(user) == "active"}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        return {"view": json.loads(view) if isinstance(view, str) else view}

    def _oauth_access(self, args: dict[str, Any], request: web.Request) -> web.Response:
        grant = self.oauth_codes.pop(str(args.get("code")), None)
        if grant is None:
            return self._error("invalid_code")
        self.tokens.add(grant["access_token"])
        return web.json_response({"ok": True, **grant})

    def grant_code(self, code: str, *, team_id: str, bot_token: str) -> None:
        """Make ``code`` exchangeable once at oauth.v2.access for a bot token of ``team_id``."""
        self.oauth_codes[code] = {
            "access_token": bot_token,
            "token_type": "bot",
            "scope": "chat:write,commands",
            "bot_user_id": BOT_USER_ID,
            "app_id": "A0DESK",
            "team": {"id": team_id, "name": "Other Team"},
            "enterprise": None,
            "authed_user": {"id": "UINSTALLER"},
            "is_enterprise_install": False,
        }

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append({"hook": request.match_info["hook"], **(await request.json())})
        return web.Response(text="ok")

    # -- Socket Mode ------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
        self._socket_ready.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.socket_frames.append(json.loads(msg.data))
        self._sockets.remove(ws)
        return ws

    async def close_sockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def push_envelope(self, kind: str, payload: dict[str, Any], envelope_id: str) -> None:
        """Deliver an event, command or action over Socket Mode, as Slack does."""
        await asyncio.wait_for(self._socket_ready.wait(), 5)
        frame = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""}
        await self._sockets[-1].send_json(frame)


class _SlackError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except _SlackError as exc:
        return web.json_response({"ok": False, "error": exc.code})


def fake_app(fake: FakeSlack) -> web.Application:
    app = fake.app()
    app.middlewares.append(_errors)
    return app


# -- inbound requests signed as Slack signs them ---------------------------------
def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


_event_ids = itertools.count(1)


def event_body(event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A0DESK",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True, "is_enterprise_install": False}],
    }


def thread_reply(channel: str, thread_ts: str, user: str, text: str, **extra: Any) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "thread_ts": thread_ts,
            "channel_type": "channel", "event_ts": ts, **extra}


def command_form(command: str, text: str, *, user: str, channel: str, channel_name: str = "support",
                 response_url: str, team_id: str = TEAM_ID) -> str:
    return urllib.parse.urlencode({
        "token": "legacy", "team_id": team_id, "team_domain": "deskbell-test", "channel_id": channel,
        "channel_name": channel_name, "user_id": user, "user_name": "someone", "command": command, "text": text,
        "api_app_id": "A0DESK", "response_url": response_url, "trigger_id": "1.2.3",
    })


def action_form(action_id: str, value: str, *, user: str, channel: str | None, message_ts: str | None = None,
                thread_ts: str | None = None, team_id: str = TEAM_ID, container_type: str = "message") -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "deskbell-test"},
        "user": {"id": user, "team_id": team_id},
        "api_app_id": "A0DESK",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": f"{time.time():.6f}"}],
    }
    if container_type == "message":
        payload["container"] = {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False}
        payload["channel"] = {"id": channel, "name": "support"}
        payload["message"] = {"ts": message_ts, "thread_ts": thread_ts, "type": "message", "bot_id": BOT_ID}
    else:
        payload["container"] = {"type": "view", "view_id": "V1"}
        payload["view"] = {"id": "V1", "type": "home", "team_id": team_id}
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


class SlackSender:
    """Posts signed requests to ``/slack/events`` of the app under test."""

    def __init__(self, client: Any, secret: str = SIGNING_SECRET) -> None:
        self.client = client
        self.secret = secret

    async def raw(self, body: str, content_type: str, headers: dict[str, str] | None = None) -> Any:
        return await self.client.post("/slack/events", data=body.encode(), headers={"Content-Type": content_type, **(headers or {})})

    async def signed(self, body: str, content_type: str, *, retry_num: int | None = None, timestamp: int | None = None) -> Any:
        headers = sign(body, secret=self.secret, timestamp=timestamp)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return await self.raw(body, content_type, headers)

    async def event(self, body: dict[str, Any], *, retry_num: int | None = None) -> Any:
        return await self.signed(json.dumps(body), "application/json", retry_num=retry_num)

    async def command(self, form: str) -> Any:
        return await self.signed(form, "application/x-www-form-urlencoded")

    async def action(self, form: str) -> Any:
        return await self.signed(form, "application/x-www-form-urlencoded")
