"""The Slack app manifest: every scope, event, command and URL the code uses.

Built here, next to the code that needs it, so the two cannot drift apart;
``manifest/slack/manifest.json`` is this with a placeholder host (a test
keeps it in sync) and ``deskbell manifest slack`` prints it with
``DESKBELL_PUBLIC_URL`` filled in.
"""

from __future__ import annotations

import json
from typing import Any

PLACEHOLDER_URL = "https://chat.example.com"
EVENTS_PATH = "/slack/events"
REDIRECT_PATH = "/slack/oauth_redirect"

BOT_SCOPES = [
    "channels:history",  # message events in public channels (agents' replies)
    "channels:join",  # /chat-setup joins a public channel by itself
    "channels:read",  # conversations.info: is the channel public, is the bot in it
    "chat:write",  # roots, replies, updates, ephemeral answers
    "chat:write.customize",  # visitor lines show under the visitor's name
    "commands",  # the slash commands below
    "groups:history",  # message events in private channels the bot was invited to
    "groups:read",  # conversations.info for private channels
    "users:read",  # users.info (names, avatars) and users.getPresence
    "users:read.email",  # match Slack users to existing agents by email
]
BOT_EVENTS = ["app_home_opened", "app_uninstalled", "message.channels", "message.groups", "tokens_revoked"]
COMMANDS = [
    ("/chat-setup", "Relay website chats into this channel", "[WIDGET_KEY]"),
    ("/chat-online", "Go on duty: website chats can reach you", ""),
    ("/chat-offline", "Go off duty", ""),
    ("/chat-status", "Widgets, who is on duty, open chats", ""),
    ("/chat-stay", "Stay available even when away from Slack", "on|off"),
]


def build_manifest(public_url: str | None = None, *, socket_mode: bool = False, name: str = "deskbell") -> dict[str, Any]:
    base = (public_url or PLACEHOLDER_URL).rstrip("/")
    events_url = base + EVENTS_PATH
    commands = []
    for command, description, hint in COMMANDS:
        entry: dict[str, Any] = {"command": command, "description": description, "should_escape": False}
        if hint:
            entry["usage_hint"] = hint
        if not socket_mode:
            entry["url"] = events_url
        commands.append(entry)
    events: dict[str, Any] = {"bot_events": BOT_EVENTS}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if not socket_mode:
        events["request_url"] = events_url
        interactivity["request_url"] = events_url
    oauth: dict[str, Any] = {"scopes": {"bot": BOT_SCOPES}}
    if public_url or not socket_mode:  # Socket Mode on one workspace needs no public URL at all
        oauth["redirect_urls"] = [base + REDIRECT_PATH]
    return {
        "display_information": {
            "name": name,
            "description": "Website live chat, answered in Slack threads",
            "background_color": "#1d4ed8",
        },
        "features": {
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": False, "messages_tab_read_only_enabled": False},
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": oauth,
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def manifest_json(public_url: str | None = None, *, socket_mode: bool = False) -> str:
    return json.dumps(build_manifest(public_url, socket_mode=socket_mode), indent=2) + "\n"
