"""Between visitor text and Slack mrkdwn. Pure functions.

Visitor text is escaped before it goes to Slack, so a visitor cannot
write ``<!channel>`` and ping the whole team. Agent text coming back is
turned into plain text the widget can show: links keep their address,
mentions become names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_ANGLE = re.compile(r"<([^<>]+)>")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mentioned_users(text: str) -> list[str]:
    """User ids mentioned as ``<@U123>`` (to look their names up)."""
    found = []
    for match in _ANGLE.finditer(text or ""):
        inner = match.group(1)
        if inner.startswith("@"):
            found.append(inner[1:].split("|", 1)[0])
    return found


def to_plain(text: str, names: Mapping[str, str] | None = None) -> str:
    """Slack message text as the visitor should read it."""
    names = names or {}

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (names.get(target[1:]) or label or "someone")
        if target.startswith("#"):
            return "#" + (label or "channel")
        if target.startswith("!"):
            word = target[1:].split("^", 1)[0]
            return _SPECIAL.get(word, label or "")
        if label and label != target:
            return f"{label} ({target})"
        return target.removeprefix("mailto:")

    return unescape(_ANGLE.sub(replace, text or ""))


def file_links(files: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Lines for files shared in a thread: a public link when the file has one."""
    lines = []
    for f in files or ():
        url = f.get("permalink_public") or f.get("url_private") or f.get("permalink")
        if url:
            name = f.get("title") or f.get("name") or "file"
            lines.append(f"{name}: {url}")
    return lines


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
