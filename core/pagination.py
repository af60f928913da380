"""Opaque cursors for keyset pagination over descending ids."""

from __future__ import annotations

import base64
import json
from typing import Any

from core.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(last_id: int) -> str:
    raw = json.dumps({"before": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id to continue before, or None for the first page."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        before = data["before"]
        if not isinstance(before, int) or isinstance(before, bool):
            raise TypeError
        return before
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationFailed.of({"cursor": "is not a cursor this API returned"}) from exc


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValidationFailed.of({"limit": f"must be a whole number from 1 to {MAX_LIMIT}"})
    return int(value)


def page(items: list[Any], limit: int, id_of: Any) -> tuple[list[Any], str | None]:
    """Trim a list fetched with ``limit + 1`` rows and say where the next page starts."""
    if len(items) > limit:
        items = items[:limit]
        return items, encode_cursor(id_of(items[-1]))
    return items, None
