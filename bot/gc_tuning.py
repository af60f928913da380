"""Python's cyclic garbage collector, kept out of the way of an event loop.

A full (generation 2) collection walks every object the collector tracks
and stops the loop while it does. A ``deskbell web`` or ``worker`` process
tracks ~150,000 objects once started (modules, SQLAlchemy's mappers and
statement caches, the knowledge-base indexes), and under the relay
benchmark's 300 lines/s it ran a full collection every 2-3 s, each 70-150 ms:
those pauses *were* the benchmark's p99, and a process paused inside a
SQLite write transaction kept every other process waiting for the lock too.

What this module does about it:

* :func:`freeze_long_lived`: once start-up is done (and again when the
  knowledge-base indexes are built), collect what start-up left behind, then
  ``gc.freeze()`` the rest. Frozen objects stay alive as before (reference
  counting still frees them) but no later collection walks them: full
  collections then cost what the process holds for its visitors, not its
  code. Cycles among frozen objects are never collected; start-up makes few.
* :func:`collect_less_often`: a full collection is considered after 100
  young-generation (gen 1) collections instead of CPython's 10. The objects a
  running process keeps (sockets, sessions, cached rows) are long-lived and
  reach the old generation; walking them 10 times as often spent ~40 % of the
  CPU of a reconnect storm (0.84 ms per resumed widget, 0.48 ms with this) and
  up to 250 ms per pause while 10,000 sockets connected. Cyclic garbage that
  reached the old generation waits longer to be freed; RSS per idle socket
  was unchanged (bench/RESULTS.md).
* :func:`watch_pauses`: every collection's pause goes to the
  ``deskbell_gc_pause_seconds`` histogram in ``/metrics``, per generation,
  so an operator sees the pauses instead of guessing at latency spikes.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from core.metrics import Histogram, Registry

log = logging.getLogger(__name__)

# Young-generation (gen 1) collections between two looks at the old generation (CPython: 10).
OLD_GENERATION_EVERY = 100

PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def freeze_long_lived(why: str) -> int:
    """Collect garbage, then exclude every object alive now from later collections.

    Returns how many objects are frozen in all (tests and logs). Called on
    the loop's thread; the one collection it runs is the last full one that
    walks these objects.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d long-lived objects set aside from garbage collection (%s) in %.0f ms",
             frozen, why, (time.perf_counter() - started) * 1000)
    return frozen


def collect_less_often() -> None:
    """Look at the old generation every :data:`OLD_GENERATION_EVERY` gen-1 collections."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLD_GENERATION_EVERY)


class PauseWatch:
    """Times each collection through ``gc.callbacks`` into a histogram."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.histogram.observe(time.perf_counter() - self._started, generation=str(info["generation"]))
            self._started = 0.0

    def stop(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def watch_pauses(metrics: Registry) -> PauseWatch:
    """Record every collection's pause in ``deskbell_gc_pause_seconds``; ``stop()`` to detach."""
    histogram = metrics.histogram(
        "deskbell_gc_pause_seconds",
        "Time the event loop stood still in Python's garbage collector, per generation.",
        PAUSE_BUCKETS,
    )
    watch = PauseWatch(histogram)
    gc.callbacks.append(watch)
    return watch
