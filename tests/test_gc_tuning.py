"""The garbage collector kept off long-lived objects, and its pauses in /metrics."""

from __future__ import annotations

import gc

from bot.gc_tuning import OLD_GENERATION_EVERY, collect_less_often, freeze_long_lived, watch_pauses
from core.metrics import Registry


def test_freezing_sets_every_live_object_aside_and_collects_garbage_first():
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector can free
    del a, b
    try:
        frozen = freeze_long_lived("test")
        assert frozen == gc.get_freeze_count() > 1000
        assert not any(isinstance(o, Node) for o in gc.get_objects())  # collected, not frozen
        survivor = [object()]
        assert any(o is survivor for o in gc.get_objects())  # new objects are collected as before
    finally:
        gc.unfreeze()


async def test_each_collection_is_timed_per_generation_in_the_metrics():
    metrics = Registry()
    watch = watch_pauses(metrics)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        watch.stop()
    assert watch not in gc.callbacks
    text = await metrics.render()
    assert 'deskbell_gc_pause_seconds_count{generation="0"}' in text
    assert 'deskbell_gc_pause_seconds_count{generation="2"}' in text
    gc.collect()
    assert (await metrics.render()) == text  # detached: nothing more recorded


def test_the_old_generation_is_looked_at_ten_times_less_often():
    before = gc.get_threshold()
    try:
        collect_less_often()
        assert gc.get_threshold() == (before[0], before[1], OLD_GENERATION_EVERY) and OLD_GENERATION_EVERY == 100
    finally:
        gc.set_threshold(*before)
