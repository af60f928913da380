"""Which destinations a widget has, cached: the reads planning would repeat per event.

Planning the deliveries of a visitor line or an offline message needs the
widget's channel bindings, its webhook endpoints and whether any agent has
a Pushover key. Those rows change a few times a year and are read on every
message; read from the database each time they were most of a submission's
cost (bench/RESULTS.md). :class:`DestinationCache` keeps them per widget.

Staying correct:

* In this process, every ORM change to ``channel_bindings``,
  ``webhook_endpoints``, ``agent_pushover`` or ``widgets`` (objects added,
  changed or deleted, or an ORM-executed UPDATE/DELETE/INSERT on those
  tables) drops the affected entries when its transaction commits, whoever
  made the change: no caller has to remember to.
* Other processes hear of it through the bus: the committing process
  publishes ``DESTINATIONS_CHANGED`` (carried by Redis when configured), and
  ``WIDGET_CHANGED``, ``AGENTS_CHANGED`` and ``RESYNC`` drop entries too.
* Anything else (raw SQL, a process without the bus) shows within ``TTL_S``.

The entries are plain frozen values, never ORM objects, so they can be
shared between sessions and event-loop tasks. The one exception is the
binding rows kept for deliveries (:meth:`DestinationCache.binding`): every
outbox delivery to Slack or Teams needs its binding, which would otherwise
cost a session (a pool checkout, a ping, BEGIN, ROLLBACK) per delivery.
They are detached, fully loaded ``ChannelBinding`` rows that nobody may
change (a change goes through a session of its own, whose commit drops
them), dropped with everything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core import events as ev
from core.models import AgentPushover, ChannelBinding, WebhookEndpoint, Widget

log = logging.getLogger(__name__)

TTL_S = 5.0
INFO_KEY = "destinations"  # session.info key under which Database puts its cache
_PENDING = "destinations.pending"  # session.info: widget ids (None = all) changed in this transaction
WATCHED = (ChannelBinding, WebhookEndpoint, AgentPushover, Widget)
WATCHED_TABLES = frozenset(m.__tablename__ for m in WATCHED)


@dataclass(frozen=True)
class BindingRef:
    id: int
    platform: str


@dataclass(frozen=True)
class EndpointRef:
    id: int
    url: str
    events: tuple[str, ...]
    enabled: bool


@dataclass(frozen=True)
class Destinations:
    bindings: tuple[BindingRef, ...]
    endpoints: tuple[EndpointRef, ...]


NONE = Destinations((), ())


class DestinationCache:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._all: tuple[float, dict[int, Destinations]] | None = None  # (fresh until, by widget)
        self._push_keys: tuple[float, bool] | None = None
        self._bindings: dict[int, tuple[float, ChannelBinding]] = {}  # id -> (fresh until, detached row)
        self.generation = 0  # counts drops: a read that began before one must not be kept
        self._bus: ev.EventBus | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reads = 0  # database reads made to fill the cache (tests count them)

    # -- reading ---------------------------------------------------------------
    async def of(self, session: AsyncSession, widget_id: int) -> Destinations:
        if _changing(session):  # a transaction changing destinations sees its own, uncommitted view
            return (await self._read(session, widget_id)).get(widget_id, NONE)
        if self._all is not None and self._all[0] > time.monotonic():
            return self._all[1].get(widget_id, NONE)
        # Every widget's at once: two small tables, one read per TTL instead of
        # one per widget (600 widgets at 0.5 lines/s each missed 40% of the time).
        until = time.monotonic() + self.ttl_s
        found = await self._read(session, None)
        self._all = (until, found)
        return found.get(widget_id, NONE)

    def peek(self, widget_id: int) -> Destinations | None:
        """The widget's destinations if the cache holds them fresh, else None (read them with
        :meth:`of`): for a path that opens a session only when it must."""
        if self._all is not None and self._all[0] > time.monotonic():
            return self._all[1].get(widget_id, NONE)
        return None

    def peek_push_keys(self) -> bool | None:
        """:meth:`any_push_key`'s answer if the cache holds it fresh, else None."""
        hit = self._push_keys
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    async def _read(self, session: AsyncSession, widget_id: int | None) -> dict[int, Destinations]:
        self.reads += 1
        bindings = select(ChannelBinding.widget_id, ChannelBinding.id, ChannelBinding.platform).order_by(ChannelBinding.id)
        endpoints = select(
            WebhookEndpoint.widget_id, WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.events, WebhookEndpoint.enabled
        ).order_by(WebhookEndpoint.id)
        if widget_id is not None:
            bindings = bindings.where(ChannelBinding.widget_id == widget_id)
            endpoints = endpoints.where(WebhookEndpoint.widget_id == widget_id)
        by_widget: dict[int, tuple[list[BindingRef], list[EndpointRef]]] = {}
        for wid, i, platform in (await session.execute(bindings)).all():
            by_widget.setdefault(int(wid), ([], []))[0].append(BindingRef(int(i), str(platform)))
        for wid, i, url, events, enabled in (await session.execute(endpoints)).all():
            by_widget.setdefault(int(wid), ([], []))[1].append(EndpointRef(int(i), str(url), tuple(events or ()), bool(enabled)))
        return {wid: Destinations(tuple(b), tuple(e)) for wid, (b, e) in by_widget.items()}

    async def any_push_key(self, session: AsyncSession) -> bool:
        """Whether any agent has a Pushover key (if none, pushes need no query at all)."""
        hit = self._push_keys
        if hit is not None and hit[0] > time.monotonic() and not _changing(session):
            return hit[1]
        self.reads += 1
        until = time.monotonic() + self.ttl_s
        found = bool((await session.execute(select(exists().where(AgentPushover.agent_id.is_not(None))))).scalar())
        if not _changing(session):
            self._push_keys = (until, found)
        return found

    def binding(self, binding_id: int) -> ChannelBinding | None:
        """The binding row kept by :meth:`keep_binding`, while fresh; treat it as read-only."""
        hit = self._bindings.get(binding_id)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def stale_bindings(self, limit: int) -> list[int]:
        """Ids of kept binding rows past their freshness (up to ``limit``), to read again together."""
        now = time.monotonic()
        return [binding_id for binding_id, (until, _) in self._bindings.items() if until <= now][:limit]

    def forget_binding(self, binding_id: int) -> None:
        self._bindings.pop(binding_id, None)

    def keep_binding(self, binding: ChannelBinding, generation: int) -> None:
        """Keep a detached, loaded row read when :attr:`generation` was ``generation``.

        A drop since then means the row may be older than the change that
        caused it: it is not kept (the next delivery reads again).
        """
        if generation == self.generation:
            self._bindings[binding.id] = (time.monotonic() + self.ttl_s, binding)

    # -- dropping --------------------------------------------------------------
    def drop(self, widget_id: int | None = None) -> None:
        """Forget a widget's destinations (and the Pushover flag).

        Everything is dropped whichever widget changed: it is all re-read in
        one query at the next miss, and changes are rare.
        """
        self._all = None
        self._push_keys = None
        self._bindings.clear()
        self.generation += 1

    def watch(self, bus: ev.EventBus) -> None:
        """Drop entries on the events that may mean a change; publish local changes."""
        self._bus = bus
        bus.subscribe(ev.DESTINATIONS_CHANGED, self._on_event)
        bus.subscribe(ev.WIDGET_CHANGED, self._on_event)
        bus.subscribe(ev.AGENTS_CHANGED, self._on_agents)
        bus.subscribe(ev.RESYNC, self._on_resync)

    async def _on_event(self, _name: str, data: dict[str, Any]) -> None:
        widget_id = data.get("widget_id")
        self.drop(widget_id if isinstance(widget_id, int) else None)

    async def _on_agents(self, _name: str, _data: dict[str, Any]) -> None:
        self._push_keys = None

    async def _on_resync(self, _name: str, _data: dict[str, Any]) -> None:
        self.drop()

    def _committed(self, widget_ids: set[int | None]) -> None:
        """A transaction that changed destinations committed: drop here, tell the others."""
        everything = None in widget_ids
        if everything:
            self.drop()
        for widget_id in widget_ids:
            if widget_id is not None and not everything:
                self.drop(widget_id)
        if self._bus is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for widget_id in [None] if everything else sorted(i for i in widget_ids if i is not None):
            task = loop.create_task(self._publish(widget_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def published(self) -> None:
        """Wait until the changes committed so far are on the bus (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _publish(self, widget_id: int | None) -> None:
        assert self._bus is not None
        try:
            await self._bus.publish(ev.DESTINATIONS_CHANGED, {"widget_id": widget_id})
        except Exception:  # the TTL still bounds how long other processes lag
            log.exception("could not publish a destinations change")


async def destinations_of(session: AsyncSession, widget_id: int) -> Destinations:
    """The widget's destinations, from the cache of the session's Database when it has one."""
    cache = session.info.get(INFO_KEY)
    if not isinstance(cache, DestinationCache):
        cache = DestinationCache(ttl_s=0)  # a session made elsewhere: read every time
    return await cache.of(session, widget_id)


async def any_push_key(session: AsyncSession) -> bool:
    cache = session.info.get(INFO_KEY)
    if not isinstance(cache, DestinationCache):
        cache = DestinationCache(ttl_s=0)
    return await cache.any_push_key(session)


# -- noticing changes, whoever makes them --------------------------------------------


def _changing(session: AsyncSession) -> bool:
    return bool(session.sync_session.info.get(_PENDING))


def _cache_of(session: Session) -> DestinationCache | None:
    cache = session.info.get(INFO_KEY)
    return cache if isinstance(cache, DestinationCache) else None


def _widget_id_of(obj: Any) -> int | None:
    if isinstance(obj, Widget):
        return obj.id
    if isinstance(obj, (ChannelBinding, WebhookEndpoint)):
        return obj.widget_id
    return None  # a Pushover key: not per widget (drop() also drops the flag)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    if _cache_of(session) is None:
        return
    pending: set[int | None] = session.info.setdefault(_PENDING, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, WATCHED) and (obj in session.new or obj in session.deleted or session.is_modified(obj)):
            if isinstance(obj, Widget) and obj in session.dirty and obj not in session.deleted:
                continue  # widget settings (texts, emails) are not destinations; deletion is
            pending.add(_widget_id_of(obj))


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: Any) -> None:
    if not (state.is_update or state.is_delete or state.is_insert) or _cache_of(state.session) is None:
        return
    name = getattr(getattr(state.statement, "table", None), "name", None)
    if name in WATCHED_TABLES and (name != "widgets" or state.is_delete):
        state.session.info.setdefault(_PENDING, set()).add(None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    cache = _cache_of(session)
    if pending and cache is not None:
        cache._committed(pending)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    # Also called for a rolled-back savepoint; keeping the marks errs on the side of dropping.
    if not session.in_transaction():
        session.info.pop(_PENDING, None)
