"""``SMTP_URL`` parsing, kept free of the SMTP client so settings can use it anywhere.

Forms: ``smtp://user:pass@host:587?starttls=1`` (plain, upgraded with
STARTTLS), ``smtps://user:pass@host`` (TLS from the first byte, port 465),
``smtp://host:25`` (no auth; STARTTLS used when offered). User and password
are URL-decoded, so ``%40`` in a user name is an ``@``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs
    use_tls: bool = False  # smtps: TLS from the start
    start_tls: bool | None = None  # True: require, False: never, None: when the server offers it
    timeout: float = 30.0

    def describe(self) -> str:
        """Where mail goes, without the password (for logs and the CLI)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'smtps' if self.use_tls else 'smtp'}://{user}{self.hostname}:{self.port}"


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"starttls={value!r} must be 1 or 0")


def parse_smtp_url(url: str) -> SmtpConfig:
    """Raise ValueError with a message fit to follow the variable's name."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError(f"{parts.scheme or url!r} is not smtp:// or smtps:// (e.g. smtp://user:pass@host:587?starttls=1)")
    if not parts.hostname:
        raise ValueError("has no host (e.g. smtp://user:pass@mail.example.com:587?starttls=1)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)[0]!r}; use starttls=1|0 or timeout=SECONDS")
    use_tls = parts.scheme == "smtps"
    start_tls = _flag(query["starttls"]) if "starttls" in query else None
    if use_tls and start_tls:
        raise ValueError("smtps:// is already TLS; drop starttls=1 or use smtp://")
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise ValueError("timeout must be a number of seconds") from None
        if not 1 <= timeout <= 600:
            raise ValueError("timeout must be between 1 and 600 seconds")
    default_port = 465 if use_tls else (587 if start_tls else 25)
    return SmtpConfig(
        hostname=parts.hostname,
        port=port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=False if use_tls else start_tls,
        timeout=timeout,
    )
