"""Relay rules: what an agent's line in a thread means. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TEXT = 4000


@dataclass(frozen=True)
class AgentText:
    kind: str  # "reply" reaches the visitor, "note" stays internal, "close" ends the chat
    text: str


def classify_agent_text(text: str) -> AgentText:
    """``note:`` or ``!`` at the start marks an internal note; ``!close`` closes.

    Notes keep their full text so colleagues see exactly what was written.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "!close" or lowered.startswith("!close "):
        return AgentText("close", stripped)
    if lowered.startswith("note:") or stripped.startswith("!"):
        return AgentText("note", stripped)
    return AgentText("reply", stripped)
