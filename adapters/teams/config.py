"""What the Teams adapter needs to know, built by ``bot.wiring`` from the settings."""

from __future__ import annotations

from dataclasses import dataclass

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
# Bots registered as multi-tenant get their connector token from this tenant.
MULTI_TENANT = "botframework.com"


@dataclass(frozen=True)
class TeamsConfig:
    app_id: str | None = None  # the bot's Entra app (client) id; None = local development, no auth
    app_password: str | None = None  # its client secret
    tenant_id: str | None = None  # single-tenant bots and Graph presence need it
    token_url: str | None = None  # override of the Entra token endpoint (tests, sovereign clouds)
    graph_url: str = DEFAULT_GRAPH_URL
    graph_presence: bool = False  # poll Graph presence of on-duty agents (Presence.Read.All)
    presence_interval_s: float = 30.0  # well under the shortest session timeout (60 s)
    public_url: str | None = None
    # Teams allows a bot 7 sends per second, 8 per 2 s and 60 per 30 s in one conversation:
    # a burst of 4 then 1.8 per second stays inside all three.
    sends_per_second: float = 1.8
    send_burst: int = 4

    @property
    def auth_enabled(self) -> bool:
        """Inbound JWTs are checked and outbound calls carry a token only with an app id."""
        return bool(self.app_id)

    def token_endpoint(self, tenant: str | None = None) -> str:
        """The client-credentials endpoint for ``tenant`` (default: ours, else Bot Framework's)."""
        if self.token_url:
            return self.token_url
        return f"{LOGIN_URL}/{tenant or self.tenant_id or MULTI_TENANT}/oauth2/v2.0/token"
