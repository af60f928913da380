"""What the Slack adapter needs to know, built by ``bot.wiring`` from the settings."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str | None = None  # one workspace
    signing_secret: str | None = None  # HTTP mode; Socket Mode needs none
    app_token: str | None = None  # Socket Mode
    client_id: str | None = None  # many workspaces, OAuth install
    client_secret: str | None = None
    api_url: str = DEFAULT_API_URL
    public_url: str | None = None
    post_interval_s: float = 1.0  # Slack's limit: about one message per second per channel
    post_burst: int = 3
    presence_interval_s: float = 30.0  # well under the shortest session timeout (60 s)
    presence_calls_per_minute: int = 40  # users.getPresence is Tier 3 (50+ per minute)
    profile_ttl_s: float = 600.0

    @property
    def multi_workspace(self) -> bool:
        return bool(self.client_id)

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)
