"""A real SMTP server for tests (aiosmtpd), keeping every message it accepts.

It speaks SMTP over a socket like any mail server, so the code under test
runs its real client path: connect, EHLO, AUTH, MAIL, RCPT, DATA. It can be
told to refuse recipients or to answer DATA with a temporary error a few
times, to prove retries.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SmtpBehaviour:
    fail_data: int = 0  # answer DATA with 451 this many times
    refuse: set[str] = field(default_factory=set)  # RCPT TO answered 550


class _Handler:
    def __init__(self, server: "FakeSmtp") -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.lower() in self.server.behaviour.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.behaviour.fail_data > 0:
            self.server.behaviour.fail_data -= 1
            return "451 4.3.0 Mail server temporarily rejected message"
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 2.0.0 Message accepted for delivery"


class FakeSmtp:
    """``with FakeSmtp() as smtp:`` then use ``smtp.url`` as SMTP_URL."""

    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.username, self.password = username, password
        self.received: list[Received] = []
        self.behaviour = SmtpBehaviour()
        kwargs: dict[str, Any] = {}
        if username is not None:
            kwargs = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok)

    @property
    def url(self) -> str:
        creds = f"{self.username}:{self.password}@" if self.username is not None else ""
        return f"smtp://{creds}127.0.0.1:{self.port}?starttls=0"

    def __enter__(self) -> "FakeSmtp":
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]
