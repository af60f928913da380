"""Secrets: signed visitor tokens, random keys and hashes of stored credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def random_key(length: int = 16) -> str:
    """A public identifier (widget keys): lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_secret(prefix: str, nbytes: int = 24) -> str:
    """A bearer credential such as an API key; shown once, stored hashed."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (no salt needed for random tokens)."""
    return hashlib.sha256(value.encode()).hexdigest()


class VisitorTokens:
    """Signs visitor ids so a browser can keep its conversation across page loads
    without being able to claim anyone else's."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(("visitor:" + secret_key).encode()).digest()

    def _sign(self, visitor_id: str) -> str:
        mac = hmac.new(self._key, visitor_id.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self) -> tuple[str, str]:
        """A new visitor id and its token."""
        visitor_id = "v_" + secrets.token_urlsafe(12)
        return visitor_id, f"{visitor_id}.{self._sign(visitor_id)}"

    def verify(self, token: object) -> str | None:
        """The visitor id in a valid token, or None."""
        if not isinstance(token, str) or len(token) > 200 or "." not in token:
            return None
        visitor_id, _, signature = token.rpartition(".")
        if not visitor_id.startswith("v_"):
            return None
        if hmac.compare_digest(signature, self._sign(visitor_id)):
            return visitor_id
        return None
