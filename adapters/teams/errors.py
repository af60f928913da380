"""What a failed Bot Connector call means for a delivery: wait, retry, or mark the channel broken.

Pure: maps an exception to an outbox :class:`Outcome` plus, for the errors
no retry can fix, the line an operator reads in the log and ``/readyz``.
Teams asks bots to retry 429, 412, 502 and 504 with backoff; 403 means the
app was removed from the team (or cannot post in a private channel), 404
that the channel or the conversation is gone.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.outbox import Outcome

RETRY_WITH_BACKOFF = {412, 429, 502, 504}
MAX_BACKOFF_S = 60.0
RESETUP = "then run @deskbell setup in the channel again"
BROKEN_HINTS = {
    403: f"the app was removed from the team or cannot post in this channel (private channels are not supported): reinstall it, {RESETUP}",
    404: "the channel or its conversation no longer exists: bind another channel with @deskbell setup",
}


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    broken: str | None = None  # the hint, when the binding must be marked broken


class TokenError(Exception):
    """The Entra token endpoint refused or failed: wrong TEAMS_APP_ID/TEAMS_APP_PASSWORD, or an outage."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """1, 2, 4 ... 60 s with jitter: quick enough for a chat, gentle enough for a throttled service."""
    base = min(MAX_BACKOFF_S, 2.0 ** max(0, attempts))
    return round(base * (rng or random).uniform(0.8, 1.2), 3)


def retry_after_s(headers: Any) -> float | None:
    """A Retry-After given in seconds (Bot Connector and Graph send seconds)."""
    try:
        value = (headers or {}).get("Retry-After")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException, attempts: int = 0) -> Failure:
    """Turn an exception raised by a connector call into what the outbox should do.

    ``attempts`` is how many times the row was tried before, for the backoff.
    """
    if isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        reason = (str(exc.message) or "")[:300]
        if status in RETRY_WITH_BACKOFF:
            after = retry_after_s(exc.headers) if status == 429 else None
            wait = after if after is not None else backoff_s(attempts)
            return Failure(Outcome(False, status_code=status, detail=f"Teams answered {status}: retry after {wait:g} s", retry_after=wait))
        if status in BROKEN_HINTS:
            detail = f"Teams answered {status}: {BROKEN_HINTS[status]}"
            return Failure(Outcome(False, status_code=status, detail=f"{detail} ({reason})", permanent=True), broken=detail)
        if status == 401:
            return Failure(Outcome(False, status_code=status, detail="Teams refused our token: check TEAMS_APP_ID and TEAMS_APP_PASSWORD"))
        if status >= 500:
            return Failure(Outcome(False, status_code=status, detail=f"Teams answered {status}: {reason}"))
        # 400, 413...: the message itself is refused; retrying the same body cannot help.
        return Failure(Outcome(False, status_code=status, detail=f"Teams refused the message ({status}): {reason}", permanent=True))
    if isinstance(exc, TokenError):
        return Failure(Outcome(False, status_code=exc.status, detail=f"could not get a Teams token: {exc}"))
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return Failure(Outcome(False, detail=f"network error talking to Teams: {type(exc).__name__}: {exc}"))
    raise exc
