"""Configuration from environment variables and an optional ``.env`` file.

A wrong value stops start-up with one line naming the variable (see
:class:`ConfigError`), never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.db import DEFAULT_URL, DatabaseUrlError, normalize_url


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


def _port(name: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ConfigError(name, f"{value!r} is not a port number (1-65535)")
    return int(value)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    redis_url: str | None = None
    public_url: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"

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

        return cls(
            database_url=database_url,
            redis_url=redis_url,
            public_url=public_url,
            secret_key=secret_key,
            host=get("DESKBELL_HOST") or "127.0.0.1",
            port=port,
            log_level=log_level,
        )

    def url_for(self, host: str, port: int) -> str:
        """The address people use to reach us: the public URL, else the bound one."""
        if self.public_url:
            return self.public_url
        shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        return f"http://{shown}:{port}"
