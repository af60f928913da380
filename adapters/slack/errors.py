"""What a failed Slack call means for a delivery: wait, retry, or stop and tell someone.

Pure: maps an exception to an outbox :class:`Outcome` plus, for the errors
that no retry can fix, the line an operator reads in the log and ``/readyz``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from core.outbox import Outcome

REINSTALL = "reinstall the Slack app (its install link or `deskbell manifest slack`) and run /chat-setup again"
# Errors that mean the binding cannot work until a person acts: the hint says how.
BROKEN_HINTS: dict[str, str] = {
    "channel_not_found": "the channel is gone or private without the bot: invite the bot, then run /chat-setup in it",
    "is_archived": "the channel is archived: unarchive it or run /chat-setup in another channel",
    "not_in_channel": "the bot is not in the channel: /invite the bot there (or run /chat-setup again)",
    "account_inactive": f"the app was uninstalled or its bot deactivated: {REINSTALL}",
    "invalid_auth": f"the bot token is not valid: check SLACK_BOT_TOKEN or {REINSTALL}",
    "not_authed": f"no bot token was sent: check SLACK_BOT_TOKEN or {REINSTALL}",
    "token_revoked": f"the bot token was revoked: {REINSTALL}",
    "token_expired": f"the bot token expired: {REINSTALL}",
    "app_uninstalled": f"the app was uninstalled from the workspace: {REINSTALL}",
    "team_access_not_granted": f"the app has no access to this workspace: {REINSTALL}",
    "missing_scope": "the app lacks a permission: update it from `deskbell manifest slack` and reinstall it",
    "no_installation": "deskbell has no installation for this workspace: install the app at /slack/install",
}
RETRYABLE = {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
DEFAULT_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    broken: str | None = None  # set when the binding must be marked broken: the hint


class NoInstallation(Exception):
    """No bot token is known for the workspace (never installed, or uninstalled)."""


def retry_after_s(headers: Any) -> float:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", DEFAULT_RETRY_AFTER_S)))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def api_error(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    return str(data.get("error")) if isinstance(data, dict) and data.get("error") else "unknown_error"


def classify(exc: BaseException) -> Failure:
    """Turn an exception raised by a Slack call into what the outbox should do."""
    if isinstance(exc, NoInstallation):
        hint = BROKEN_HINTS["no_installation"]
        return Failure(Outcome(False, detail=f"no_installation: {hint}", permanent=True), broken=f"no_installation: {hint}")
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code if exc.response is not None else None
        error = api_error(exc)
        if status == 429 or error == "ratelimited":
            after = retry_after_s(exc.response.headers if exc.response is not None else None)
            return Failure(Outcome(False, status_code=429, detail=f"ratelimited: retry after {after:g} s", retry_after=after))
        if error in BROKEN_HINTS:
            detail = f"{error}: {BROKEN_HINTS[error]}"
            return Failure(Outcome(False, status_code=status, detail=detail, permanent=True), broken=detail)
        if (status is not None and status >= 500) or error in RETRYABLE:
            return Failure(Outcome(False, status_code=status, detail=f"Slack answered {status}: {error}"))
        # invalid_blocks, msg_too_long...: a bug on our side or a bad message; retrying cannot help.
        return Failure(Outcome(False, status_code=status, detail=f"Slack refused the call: {error}", permanent=True))
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return Failure(Outcome(False, detail=f"network error talking to Slack: {type(exc).__name__}: {exc}"))
    raise exc
