"""heap.settle(): the set-up process is frozen out of garbage collection, and a replaced registry is still freed."""

from __future__ import annotations

import gc

from gkjk.registry import RegistryHolder
from gkjk_process import TEST_REGISTRY
from ingest_twisted import heap


def test_settle_freezes_what_exists_and_a_frozen_registry_is_freed_once_replaced():
    saved = gc.get_threshold()
    try:
        RegistryHolder(TEST_REGISTRY)  # first load: fills the loader's lasting caches
        gc.collect()
        before = len(gc.get_objects())
        holder = RegistryHolder(TEST_REGISTRY)
        gc.collect()  # a collection stops tracking tuples of strings (index keys): count what stays tracked
        registry_objects = len(gc.get_objects()) - before
        heap.settle()
        frozen = gc.get_freeze_count()
        assert frozen >= before + registry_objects - 100  # (settle's collect frees a few)
        assert not any(obj is holder.current for obj in gc.get_objects())  # no collection walks it any more
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, saved[1], saved[2])

        del holder  # what a reload does to the old registry: drop the last reference
        # Reference counting frees it although it is frozen (it holds no reference cycles).
        assert frozen - gc.get_freeze_count() >= registry_objects * 0.9
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_collector_pauses_count_collections_and_keep_the_longest_per_interval():
    pauses = heap.CollectorPauses()
    pauses.install()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        pauses.uninstall()
    gc.collect()  # not counted any more
    fields = pauses.fields()
    assert (fields["gc_collections"], fields["gc_full_collections"]) == (2, 1)
    assert 0 < fields["gc_pause_max_ms"] <= fields["gc_seconds"] * 1000
    pauses.reset_interval()
    assert pauses.fields()["gc_pause_max_ms"] == 0 and pauses.fields()["gc_collections"] == 2
