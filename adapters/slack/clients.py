"""Web API clients: one shared HTTP session, the right token per workspace.

Two kinds of client, on purpose:

* outbox clients (``for_team(..., outbox=True)``) have no retry handlers.
  The outbox owns retries: a 429's ``Retry-After`` becomes the row's next
  attempt, every try is logged, and no dispatcher slot sleeps for Slack.
* interactive clients (Bolt's, lookups, views) retry a lost connection and
  honour one 429 themselves (``AsyncRateLimitErrorRetryHandler``), since
  a person is waiting and there is no row to reschedule.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.config import SlackConfig
from adapters.slack.errors import NoInstallation
from adapters.slack.store import SqlInstallationStore

TIMEOUT_S = 15
# Outbox clients kept for reuse, by token. A client holds only its settings, so one
# serves any number of calls at once; making one per post was a twentieth of the
# worker's CPU under load (bench/RESULTS.md). Past this many tokens, start afresh.
MAX_CACHED_CLIENTS = 1000


class SlackClients:
    def __init__(self, config: SlackConfig, installations: SqlInstallationStore | None) -> None:
        self.config = config
        self.installations = installations
        self._session: aiohttp.ClientSession | None = None
        self._outbox_clients: dict[str | None, AsyncWebClient] = {}  # of the current session

    def session(self) -> aiohttp.ClientSession:
        """The shared session (AsyncWebClient opens one per call without it); made in the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
            self._outbox_clients.clear()  # they hold the closed session
        return self._session

    def client(self, token: str | None, *, outbox: bool = False) -> AsyncWebClient:
        session = self.session()
        if outbox:
            cached = self._outbox_clients.get(token)
            if cached is None:
                if len(self._outbox_clients) >= MAX_CACHED_CLIENTS:
                    self._outbox_clients.clear()
                cached = self._outbox_clients[token] = AsyncWebClient(
                    token=token, base_url=self.config.api_url, session=session, timeout=TIMEOUT_S, retry_handlers=[]
                )
            return cached
        handlers = [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
        return AsyncWebClient(
            token=token, base_url=self.config.api_url, session=session, timeout=TIMEOUT_S, retry_handlers=handlers
        )

    async def token_for(self, team_id: str) -> str:
        """The bot token for calls made outside a Slack request (relays, presence)."""
        if self.config.bot_token:
            return self.config.bot_token
        bot = None
        if self.installations is not None:
            bot = await self.installations.async_find_bot(enterprise_id=None, team_id=team_id)
        if bot is None or not bot.bot_token:
            raise NoInstallation(f"no Slack installation for workspace {team_id}")
        return bot.bot_token

    async def for_team(self, team_id: str, *, outbox: bool = False) -> AsyncWebClient:
        return self.client(await self.token_for(team_id), outbox=outbox)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
