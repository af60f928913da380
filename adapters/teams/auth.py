"""Credentials both ways: tokens we send (client credentials) and JWTs we check.

Outbound, the Agents SDK asks a ``Connections`` for a token provider; ours
gets app-only tokens from Entra ID over the shared aiohttp session (no
blocking ``requests`` calls on the event loop) and caches them until shortly
before they expire. Without ``TEAMS_APP_ID`` it is anonymous, for local
development against the Bot Framework Emulator or a fake connector.

Inbound, :func:`authenticate` checks the Bot Framework JWT with the SDK's
own validator when an app id is set; without one every request is
anonymous, as the SDK does for development.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from jwt import PyJWTError
from microsoft_agents.hosting.core import RestChannelServiceClientFactory, TurnContext
from microsoft_agents.hosting.core.authorization import (
    AgentAuthConfiguration,
    AnonymousTokenProvider,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator
from microsoft_agents.hosting.core.connector.client import UserTokenClient

from adapters.teams.config import BOT_FRAMEWORK_SCOPE, TeamsConfig
from adapters.teams.errors import TokenError

REFRESH_EARLY_S = 300  # renew five minutes before expiry
TOKEN_TIMEOUT_S = 15


class ClientCredentials:
    """App-only Entra tokens for one app, cached per scope."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_url: str,
        session: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_url = token_url
        self._session = session
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    async def token(self, scope: str) -> str:
        hit = self._cache.get(scope)
        if hit and hit[1] - REFRESH_EARLY_S > self.clock():
            return hit[0]
        async with self._lock:  # one refresh at a time, not one per waiting delivery
            hit = self._cache.get(scope)
            if hit and hit[1] - REFRESH_EARLY_S > self.clock():
                return hit[0]
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": scope,
            }
            try:
                async with self._session().post(
                    self.token_url, data=form, timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_S)
                ) as resp:
                    body: Any = await resp.json(content_type=None)
                    if resp.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
                        error = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
                        raise TokenError(f"{self.token_url} answered {resp.status}: {str(error or '')[:200]}", resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                raise TokenError(f"{self.token_url}: {type(exc).__name__}: {exc}") from exc
            token = str(body["access_token"])
            self._cache[scope] = (token, self.clock() + float(body.get("expires_in") or 3600))
            return token


class _Credential(AsyncTokenCredential):
    """The azure-core view of :class:`ClientCredentials`, which the SDK's protocol asks for."""

    def __init__(self, credentials: ClientCredentials) -> None:
        self.credentials = credentials

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = await self.credentials.token(scopes[0] if scopes else BOT_FRAMEWORK_SCOPE)
        return AccessToken(token, int(time.time()) + 600)

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: Any) -> None:
        return None


class BotTokenProvider:
    """An ``AccessTokenProviderBase`` for the Agents SDK backed by :class:`ClientCredentials`."""

    def __init__(self, credentials: ClientCredentials, configuration: AgentAuthConfiguration) -> None:
        self.credentials = credentials
        self._configuration = configuration

    @property
    def configuration(self) -> AgentAuthConfiguration:
        return self._configuration

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        return await self.credentials.token(scopes[0] if scopes else BOT_FRAMEWORK_SCOPE)

    def get_token_credential(self) -> AsyncTokenCredential:
        return _Credential(self.credentials)


def auth_configuration(config: TeamsConfig) -> AgentAuthConfiguration:
    """The SDK's view of our registration; anonymous requests are allowed only without an app id."""
    return AgentAuthConfiguration(
        client_id=config.app_id,
        tenant_id=config.tenant_id,
        client_secret=config.app_password,
        anonymous_allowed=not config.auth_enabled,
    )


class TeamsConnections:
    """The SDK's ``Connections``: one connection, ours."""

    def __init__(self, config: TeamsConfig, session: Callable[[], aiohttp.ClientSession]) -> None:
        self.configuration = auth_configuration(config)
        self.provider: Any
        if config.auth_enabled:
            credentials = ClientCredentials(
                config.app_id or "", config.app_password or "", config.token_endpoint(), session
            )
            self.provider = BotTokenProvider(credentials, self.configuration)
        else:
            self.provider = AnonymousTokenProvider()

    def get_connection(self, connection_name: str) -> Any:
        return self.provider

    def get_default_connection(self) -> Any:
        return self.provider

    def get_token_provider(self, claims_identity: ClaimsIdentity, service_url: str) -> Any:
        return self.provider

    def get_token_provider_from_activity(self, claims_identity: ClaimsIdentity, activity: Any) -> Any:
        return self.provider

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return self.configuration


class ClientFactory(RestChannelServiceClientFactory):
    """The SDK's connector client factory, minus the user-token client's token.

    deskbell signs no user in (no OAuth prompts), so the user token client is
    never called: fetching a token for it on every turn would only cost a
    round trip, and without an app id it fails the turn outright.
    """

    def __init__(self, connections: TeamsConnections, app_id: str | None) -> None:
        super().__init__(connections)
        self.app_id = app_id or "deskbell-local"

    async def create_user_token_client(
        self, context: TurnContext, claims_identity: ClaimsIdentity, use_anonymous: bool = False
    ) -> UserTokenClient:
        return UserTokenClient(app_id=self.app_id, endpoint=self._token_service_endpoint, token="")


class Unauthorized(Exception):
    """The request carries no valid Bot Framework token for our app."""


async def authenticate(authorization: str | None, configuration: AgentAuthConfiguration) -> ClaimsIdentity:
    """Check the ``Authorization`` header of an inbound activity; raise :class:`Unauthorized`."""
    validator = JwtTokenValidator(configuration)
    if configuration.ANONYMOUS_ALLOWED:  # no app id: development, a token could not be checked anyway
        return validator.get_anonymous_claims()
    if not authorization:
        raise Unauthorized("Authorization header not found")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise Unauthorized("Authorization must be a Bearer token")
    try:
        return await validator.validate_token(token)
    except (PyJWTError, ValueError, KeyError) as exc:
        raise Unauthorized(f"token refused ({type(exc).__name__})") from exc
