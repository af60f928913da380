"""Where people are sent from notifications (emails, pushes, digests).

Paths only: the adapter that sends makes them absolute with the public URL it
was configured with, so a planned delivery never bakes in a stale address.
"""

from __future__ import annotations


def offline_message_path(offline_message_id: int) -> str:
    return f"/console#offline/{offline_message_id}"


def conversation_path(conversation_id: int) -> str:
    return f"/console#conversation/{conversation_id}"


def absolute(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path
