"""Configuration from environment variables and an optional ``.env`` file.

A wrong value stops start-up with one line naming the variable (see
:class:`ConfigError`), never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.email.config import SmtpConfig, parse_smtp_url
from adapters.llm.factory import NAMES as AI_PROVIDERS
from adapters.llm.factory import LLMSettings
from core.db import DEFAULT_URL, DatabaseUrlError, normalize_url
from core.services import Limits
from core.validation import FieldError
from core.validation import email as check_email

DEFAULT_PUSHOVER_API_URL = "https://api.pushover.net"


class ConfigError(Exception):
    """A setting is missing or wrong; ``str()`` is the line to print."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; ``#`` comments, optional quotes and ``export`` prefix."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}", "expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# Abuse limits an operator may change (core.services.Limits); a load test from one
# address raises them, e.g. DESKBELL_LIMIT_CONNECTIONS_PER_IP=100000 (see bench/README.md).
LIMIT_VARIABLES = {
    "DESKBELL_LIMIT_CONNECTIONS_PER_IP": "connections_per_ip",
    "DESKBELL_LIMIT_OFFLINE_PER_IP_PER_HOUR": "offline_per_ip_per_hour",
    "DESKBELL_LIMIT_MESSAGES_PER_CONNECTION_PER_MINUTE": "messages_per_connection_per_minute",
    "DESKBELL_LIMIT_MESSAGES_PER_IP_PER_MINUTE": "messages_per_ip_per_minute",
}


def _limit_settings(get: Callable[[str], str | None]) -> Limits:
    """DESKBELL_LIMIT_* variables over the defaults of :class:`Limits`; each a whole number >= 1."""
    values: dict[str, int] = {}
    for name, attr in LIMIT_VARIABLES.items():
        text = get(name)
        if text is None:
            continue
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(name, f"{text!r} is not a whole number of at least 1")
        values[attr] = int(text)
    return Limits(**values)


def _port(name: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ConfigError(name, f"{value!r} is not a port number (1-65535)")
    return int(value)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    redis_url: str | None = None
    redis_prefix: str = "deskbell"
    public_url: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_format: str = "text"
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_api_url: str | None = None
    smtp: SmtpConfig | None = None
    mail_from: str | None = None
    pushover_token: str | None = None
    pushover_api_url: str = DEFAULT_PUSHOVER_API_URL
    teams_app_id: str | None = None
    teams_app_password: str | None = None
    teams_tenant_id: str | None = None
    teams_local_dev: bool = False
    teams_graph_presence: bool = False
    teams_graph_url: str | None = None
    teams_token_url: str | None = None
    ai: LLMSettings = LLMSettings()
    limits: Limits = field(default_factory=Limits)  # DESKBELL_LIMIT_* (e.g. raised for load tests)
    # Pending connections the kernel queues for `web`/`run` (capped by net.core.somaxconn).
    # aiohttp's default of 128 dropped tens of thousands of SYNs when 10,000 widgets came back.
    listen_backlog: int = 2048

    @property
    def slack_enabled(self) -> bool:
        """Slack is configured: one workspace by bot token, or many by OAuth."""
        return bool(self.slack_bot_token or self.slack_client_id)

    @property
    def teams_enabled(self) -> bool:
        """Teams is configured (a bot registration), or explicitly run without auth for local development."""
        return bool(self.teams_app_id or self.teams_local_dev)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> "Settings":
        merged: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv else {}
        merged.update(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = merged.get(name)
            return value.strip() if value is not None and value.strip() else None

        database_url = get("DESKBELL_DATABASE_URL") or DEFAULT_URL
        try:
            database_url = normalize_url(database_url)
        except DatabaseUrlError as exc:
            raise ConfigError("DESKBELL_DATABASE_URL", str(exc)) from exc

        redis_url = get("DESKBELL_REDIS_URL")
        if redis_url and urlsplit(redis_url).scheme not in {"redis", "rediss", "unix"}:
            raise ConfigError("DESKBELL_REDIS_URL", f"{redis_url!r} is not a redis:// URL")
        redis_prefix = get("DESKBELL_REDIS_PREFIX") or "deskbell"
        if not redis_prefix.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(redis_prefix) > 60:
            raise ConfigError("DESKBELL_REDIS_PREFIX", f"{redis_prefix!r} must be letters, digits, - _ or . (at most 60)")

        public_url = get("DESKBELL_PUBLIC_URL")
        if public_url:
            parts = urlsplit(public_url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise ConfigError("DESKBELL_PUBLIC_URL", f"{public_url!r} is not an http(s) URL")
            public_url = public_url.rstrip("/")

        secret_key = get("DESKBELL_SECRET_KEY")
        if secret_key is not None and len(secret_key) < 16:
            raise ConfigError("DESKBELL_SECRET_KEY", "must be at least 16 characters")

        port_text = get("PORT")
        port = _port("PORT", port_text) if port_text else _port("DESKBELL_PORT", get("DESKBELL_PORT") or "8080")

        log_level = (get("DESKBELL_LOG_LEVEL") or "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError("DESKBELL_LOG_LEVEL", f"{log_level!r} is not DEBUG, INFO, WARNING or ERROR")

        log_format = (get("DESKBELL_LOG_FORMAT") or "text").lower()
        if log_format not in {"text", "json"}:
            raise ConfigError("DESKBELL_LOG_FORMAT", f"{log_format!r} is not text or json")

        slack = _slack_settings(get)
        deliveries = _delivery_settings(get)
        teams = _teams_settings(get)
        ai = _ai_settings(get)
        limits = _limit_settings(get)
        backlog_text = get("DESKBELL_LISTEN_BACKLOG") or "2048"
        if not backlog_text.isdigit() or not 1 <= int(backlog_text) <= 65535:
            raise ConfigError("DESKBELL_LISTEN_BACKLOG", f"{backlog_text!r} is not a whole number from 1 to 65535")

        return cls(
            **slack,
            **deliveries,
            **teams,
            ai=ai,
            limits=limits,
            listen_backlog=int(backlog_text),
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            public_url=public_url,
            secret_key=secret_key,
            host=get("DESKBELL_HOST") or "127.0.0.1",
            port=port,
            log_level=log_level,
            log_format=log_format,
        )

    def url_for(self, host: str, port: int) -> str:
        """The address people use to reach us: the public URL, else the bound one."""
        if self.public_url:
            return self.public_url
        shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        return f"http://{shown}:{port}"


def _slack_settings(get: Callable[[str], str | None]) -> dict[str, str | None]:
    """SLACK_* variables, checked together: Bolt itself would start with a missing
    signing secret and answer 500 to Slack's first request."""
    bot_token, signing_secret = get("SLACK_BOT_TOKEN"), get("SLACK_SIGNING_SECRET")
    app_token, api_url = get("SLACK_APP_TOKEN"), get("SLACK_API_URL")
    client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
    if bot_token and not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN", "must be a bot token starting with xoxb- (OAuth & Permissions page)")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN", "must be an app-level token starting with xapp- (Basic Information page)")
    if bool(client_id) != bool(client_secret):
        missing = "SLACK_CLIENT_SECRET" if client_id else "SLACK_CLIENT_ID"
        raise ConfigError(missing, "is required with SLACK_CLIENT_ID/SLACK_CLIENT_SECRET (multi-workspace install)")
    if bot_token and client_id:
        raise ConfigError(
            "SLACK_CLIENT_ID", "set either SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID/SECRET (OAuth install), not both"
        )
    if (app_token or signing_secret) and not (bot_token or client_id):
        raise ConfigError("SLACK_BOT_TOKEN", "is required for Slack (or SLACK_CLIENT_ID/SECRET for OAuth installs)")
    if client_id and not signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET", "is required for the OAuth install (Basic Information page)")
    if bot_token and not app_token and not signing_secret:
        raise ConfigError(
            "SLACK_SIGNING_SECRET", "is required with SLACK_BOT_TOKEN over HTTP (or set SLACK_APP_TOKEN for Socket Mode)"
        )
    if api_url:
        parts = urlsplit(api_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError("SLACK_API_URL", f"{api_url!r} is not an http(s) URL")
        api_url = api_url.rstrip("/") + "/"
    return {
        "slack_bot_token": bot_token,
        "slack_signing_secret": signing_secret,
        "slack_app_token": app_token,
        "slack_client_id": client_id,
        "slack_client_secret": client_secret,
        "slack_api_url": api_url,
    }


def _delivery_settings(get: Callable[[str], str | None]) -> dict[str, Any]:
    """SMTP_URL, DESKBELL_MAIL_FROM, PUSHOVER_TOKEN and PUSHOVER_API_URL (a stand-in
    for api.pushover.net, e.g. a fake in tests or an egress proxy)."""
    smtp: SmtpConfig | None = None
    smtp_url = get("SMTP_URL")
    if smtp_url:
        try:
            smtp = parse_smtp_url(smtp_url)
        except ValueError as exc:
            raise ConfigError("SMTP_URL", str(exc)) from None
    mail_from = get("DESKBELL_MAIL_FROM")
    if mail_from:
        address = parseaddr(mail_from)[1]
        if "@" not in address or not _is_email(address):
            raise ConfigError("DESKBELL_MAIL_FROM", f"{mail_from!r} is not an address like deskbell@example.com or \"Support <help@example.com>\"")
    elif smtp is not None:
        if smtp.username and _is_email(smtp.username):
            mail_from = smtp.username
        else:
            raise ConfigError("DESKBELL_MAIL_FROM", "is required with SMTP_URL: the address emails are sent from")
    token = get("PUSHOVER_TOKEN")
    if token and not re.fullmatch(r"[A-Za-z0-9]{30}", token):
        raise ConfigError("PUSHOVER_TOKEN", "must be the 30-character API token of your Pushover application")
    api_url = get("PUSHOVER_API_URL") or DEFAULT_PUSHOVER_API_URL
    parts = urlsplit(api_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError("PUSHOVER_API_URL", f"{api_url!r} is not an http(s) URL")
    return {"smtp": smtp, "mail_from": mail_from, "pushover_token": token, "pushover_api_url": api_url.rstrip("/")}


def _is_email(value: str) -> bool:
    try:
        return check_email(value) is not None
    except FieldError:
        return False


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _flag(name: str, value: str | None) -> bool:
    if value is None or value.lower() in _OFF:
        return False
    if value.lower() in _ON:
        return True
    raise ConfigError(name, f"{value!r} is not on or off")


def _teams_settings(get: Callable[[str], str | None]) -> dict[str, Any]:
    """TEAMS_* variables, checked together: a bot with an app id but no password
    would start and then fail every reply with 401."""
    app_id, password, tenant = get("TEAMS_APP_ID"), get("TEAMS_APP_PASSWORD"), get("TEAMS_TENANT_ID")
    local_dev = _flag("TEAMS_LOCAL_DEV", get("TEAMS_LOCAL_DEV"))
    presence = _flag("TEAMS_GRAPH_PRESENCE", get("TEAMS_GRAPH_PRESENCE"))
    if app_id and not _GUID.fullmatch(app_id):
        raise ConfigError("TEAMS_APP_ID", "must be the bot's Microsoft App ID, a GUID (Azure Bot > Configuration)")
    if app_id and not password:
        raise ConfigError("TEAMS_APP_PASSWORD", "is required with TEAMS_APP_ID: the client secret of the bot's app registration")
    if password and not app_id:
        raise ConfigError("TEAMS_APP_ID", "is required with TEAMS_APP_PASSWORD")
    if tenant and not _GUID.fullmatch(tenant):
        raise ConfigError("TEAMS_TENANT_ID", "must be your Microsoft Entra tenant id, a GUID")
    if app_id and local_dev:
        raise ConfigError("TEAMS_LOCAL_DEV", "turns inbound authentication off: unset it when TEAMS_APP_ID is set")
    if presence and not (app_id and tenant):
        raise ConfigError("TEAMS_GRAPH_PRESENCE", "needs TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID (Presence.Read.All)")
    urls: dict[str, str | None] = {}
    for name in ("TEAMS_GRAPH_URL", "TEAMS_TOKEN_URL"):
        url = get(name)
        if url:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise ConfigError(name, f"{url!r} is not an http(s) URL")
            url = url.rstrip("/")
        urls[name] = url
    return {
        "teams_app_id": app_id,
        "teams_app_password": password,
        "teams_tenant_id": tenant,
        "teams_local_dev": local_dev,
        "teams_graph_presence": presence,
        "teams_graph_url": urls["TEAMS_GRAPH_URL"],
        "teams_token_url": urls["TEAMS_TOKEN_URL"],
    }


def _http_url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(name, f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _ai_settings(get: Callable[[str], str | None]) -> LLMSettings:
    """The AI assistant's providers. With no key at all the built-in retrieval-only
    assistant answers; DESKBELL_AI_PROVIDER picks among several configured ones."""
    openai_key, anthropic_key, gemini_key = get("OPENAI_API_KEY"), get("ANTHROPIC_API_KEY"), get("GEMINI_API_KEY")
    openai_url = _http_url("OPENAI_BASE_URL", get("OPENAI_BASE_URL"))
    anthropic_url = _http_url("ANTHROPIC_BASE_URL", get("ANTHROPIC_BASE_URL"))
    gemini_url = _http_url("GEMINI_BASE_URL", get("GEMINI_BASE_URL"))
    model = get("DESKBELL_AI_MODEL")
    if model is not None and (len(model) > 100 or any(c.isspace() for c in model)):
        raise ConfigError("DESKBELL_AI_MODEL", f"{model!r} is not a model name")
    timeout_text = get("DESKBELL_AI_TIMEOUT") or "20"
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not 1 <= timeout <= 120:
        raise ConfigError("DESKBELL_AI_TIMEOUT", f"{timeout_text!r} is not a number of seconds from 1 to 120")
    draft = LLMSettings(
        openai_api_key=openai_key,
        openai_base_url=openai_url,
        anthropic_api_key=anthropic_key,
        anthropic_base_url=anthropic_url,
        gemini_api_key=gemini_key,
        gemini_base_url=gemini_url,
    )
    provider = (get("DESKBELL_AI_PROVIDER") or "").lower() or None
    if provider is not None and provider not in AI_PROVIDERS:
        raise ConfigError("DESKBELL_AI_PROVIDER", f"{provider!r} is not one of {', '.join(AI_PROVIDERS)}")
    needs = {
        "openai": ("OPENAI_API_KEY", openai_key and draft.openai_name == "openai"),
        "openai_compatible": ("OPENAI_BASE_URL", draft.openai_name == "openai_compatible"),
        "anthropic": ("ANTHROPIC_API_KEY", anthropic_key),
        "gemini": ("GEMINI_API_KEY", gemini_key),
    }
    if provider in needs and not needs[provider][1]:
        variable = needs[provider][0]
        hint = " (the address of your Ollama, vLLM or LM Studio server, like http://localhost:11434/v1)" if provider == "openai_compatible" else ""
        raise ConfigError(variable, f"is required with DESKBELL_AI_PROVIDER={provider}{hint}")
    if provider is None:
        provider = draft.openai_name or ("anthropic" if anthropic_key else "gemini" if gemini_key else "retrieval")
    if provider == "openai_compatible" and not model:
        raise ConfigError("DESKBELL_AI_MODEL", "is required for an OpenAI-compatible server: the model it serves, like llama3.1")
    return LLMSettings(
        provider=provider,
        model=model,
        openai_api_key=openai_key,
        openai_base_url=openai_url,
        anthropic_api_key=anthropic_key,
        anthropic_base_url=anthropic_url,
        gemini_api_key=gemini_key,
        gemini_base_url=gemini_url,
        timeout_s=timeout,
    )
