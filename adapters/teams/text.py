"""Between visitor text and Teams message text. Pure functions.

deskbell sends its messages as ``textFormat: xml`` (Teams' HTML subset) and
escapes visitor text into it, so a visitor cannot format the team's
channel, fake a mention or hide a link: HTML escaping is exact, where
Markdown escaping in Teams is not. Agent text coming back is
HTML-ish (``<p>``, ``<at>``, entities); the visitor's widget shows plain text.
"""

from __future__ import annotations

import html
import re

_AT = re.compile(r"<at[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>|</div>\s*<div[^>]*>", re.IGNORECASE)
_LINK = re.compile(r"<a\s[^>]*href=\"([^\"]*)\"[^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_BLANKS = re.compile(r"\n{3,}")


def escape(text: str) -> str:
    """Plain text as literal Teams ``xml`` text; line breaks kept."""
    return html.escape(text, quote=False).replace("\r\n", "\n").replace("\n", "<br>")


def strip_mention(text: str, bot_name: str | None) -> str:
    """Drop ``<at>bot</at>`` wherever it stands (the SDK removes it only when ids match)."""
    def keep_others(match: re.Match[str]) -> str:
        inner = match.group(1)
        return "" if bot_name is None or inner.strip().lower() == bot_name.strip().lower() else match.group(0)

    return _AT.sub(keep_others, text or "").strip()


def to_plain(text: str) -> str:
    """Agent text from Teams as the visitor should read it: mentions become names, tags go."""
    out = _AT.sub(lambda m: m.group(1), text or "")
    out = _BREAK.sub("\n", out)

    def link(match: re.Match[str]) -> str:
        href, label = match.group(1), _TAG.sub("", match.group(2)).strip()
        return href if not label or label == href else f"{label} ({href})"

    out = _LINK.sub(link, out)
    out = _TAG.sub("", out)
    out = html.unescape(out).replace("\xa0", " ")
    return _BLANKS.sub("\n\n", "\n".join(line.rstrip() for line in out.splitlines())).strip()


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def relay_line(sender: str, author: str | None, text: str, *, internal: bool = False) -> str:
    """A stored message as a reply in the chat's chain (Teams ``xml`` text).

    Only deskbell's own markup is HTML; everything people wrote is escaped.
    """
    body = escape(truncate(text, 20_000))
    if sender == "visitor":
        return f"<b>{escape(author or 'Visitor')}</b>: {body}"
    if sender == "agent":
        who = escape(author or "Agent")
        if internal:
            return f"<b>Note by {who}</b> (the visitor does not see this): {body}"
        return f"<b>{who}</b> (to the visitor): {body}"
    if sender == "bot":  # the assistant's answer, as the visitor read it
        return f"<b>{escape(author or 'Assistant')}</b> (AI): {body}"
    return f"<i>{body}</i>"
