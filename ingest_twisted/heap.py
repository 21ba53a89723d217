"""Garbage-collector settings for a serving process, so collections stay out of the ack latency.

An upload's objects (packet, lines, Deferred) live until the next group fsync,
a few milliseconds: with CPython's default thresholds that is long enough to
survive the young collections and be promoted. They die soon after by
reference counting, but the promotions still count towards the next full
collection, which walks every object the process holds (modules, the site
registry). On the 2-core bench at 10,000 uploads/s that was about one full
collection every 2 s per worker, of up to 150 ms, each one straight into the
p99 ack latency (docs/benchmarks.md).

Two settings stop it: objects alive once the worker is set up are frozen
(moved where no collection walks them; the registry holds no reference cycles,
so a frozen registry replaced by a reload is still freed by reference
counting), and the young generation is large enough that an upload's objects
are normally gone before a young collection looks at them.

`CollectorPauses` times every collection for the self-metrics, so an operator
sees it if collections come back into the latency.
"""

from __future__ import annotations

import gc
import time
from typing import Any

#: Allocations (of container objects) between young collections; CPython's default is 700.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Collect, freeze what survives, and raise the young threshold; call once set up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_new() -> None:
    """Freeze long-lived objects made after ``settle()``, e.g. a reloaded registry."""
    gc.freeze()


class CollectorPauses:
    """Collections and the time they held the process: counters since start, the longest pause per interval."""

    def __init__(self) -> None:
        self.collections = 0
        self.full_collections = 0
        self.seconds = 0.0
        self.longest = 0.0  # of the current reporting interval
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def fields(self) -> dict[str, int | float]:
        return {
            "gc_collections": self.collections,
            "gc_full_collections": self.full_collections,
            "gc_seconds": round(self.seconds, 6),
            "gc_pause_max_ms": round(self.longest * 1000, 3),
        }

    def reset_interval(self) -> None:
        self.longest = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.collections += 1
        self.full_collections += info["generation"] == 2
        self.seconds += pause
        self.longest = max(self.longest, pause)
