"""Sending one message over SMTP, with the server's answer turned into an outbox outcome.

Only answers about *this message* are permanent (a recipient or the content
refused with a 5xx); trouble with the connection, the login or our sender
address is retried, because fixing ``SMTP_URL`` should make waiting mail go.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib

from adapters.email.config import SmtpConfig
from core.outbox import Outcome


def _permanent(code: int) -> bool:
    return 500 <= code < 600


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, message: EmailMessage) -> Outcome:
        c = self.config
        try:
            errors, response = await aiosmtplib.send(
                message,
                hostname=c.hostname,
                port=c.port,
                username=c.username,
                password=c.password,
                use_tls=c.use_tls,
                start_tls=c.start_tls,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            return Outcome(False, status_code=codes[0] if codes else None, detail=f"recipient refused: {detail}",
                           permanent=bool(codes) and all(_permanent(code) for code in codes))
        except aiosmtplib.SMTPDataError as exc:
            return Outcome(False, status_code=exc.code, detail=f"message refused: {exc.code} {exc.message}",
                           permanent=_permanent(exc.code))
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(False, status_code=exc.code, detail=f"{type(exc).__name__}: {exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            return Outcome(False, detail=f"cannot reach {c.describe()}: {type(exc).__name__}: {exc}")
        if errors:  # some recipients refused; we send one recipient per message, so this is rare
            detail = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
            return Outcome(False, detail=f"recipient refused: {detail}", permanent=True)
        return Outcome(True, status_code=250, detail=response[:500])
