"""Background work that must not run in every web process: outbox deliveries
and periodic housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import delete

from core.clock import utcnow
from core.db import Database
from core.dispatch import Dispatcher
from core.models import AgentToken

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600


async def purge_expired_tokens(db: Database) -> int:
    """Expired console links and sessions are useless; keep the table small."""
    async with db.write() as session:
        result = await session.execute(delete(AgentToken).where(AgentToken.expires_at <= utcnow()))
    return int(result.rowcount or 0)


async def _housekeeping(db: Database, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            removed = await purge_expired_tokens(db)
            if removed:
                log.info("purged %d expired console tokens", removed)
        except Exception:
            log.exception("token purge failed; will retry")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PURGE_EVERY_S)


async def run_worker(db: Database, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Deliver the outbox and keep house until ``stop`` is set."""
    await asyncio.gather(dispatcher.run(stop), _housekeeping(db, stop))
