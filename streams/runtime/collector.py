"""The cyclic garbage collector, run between the worker's steps rather than inside them.

Left to itself, CPython starts a collection after a count of allocations, in the middle of
whatever step is running. A young collection walks every young object still alive, and a
worker's young objects are mostly its batches in flight (records, events, changes): in the
backlog test, young collections took 40-120 ms and middle ones 20-77 ms, on top of the step
they interrupted. (The count that starts them is net of deallocations, also of old objects:
a young generation held 177,000 objects at a threshold of 50,000.)

So the worker collects itself, at the points where a step gives the loop its turn
(:meth:`Collector.between_steps`): the young generation at most every :data:`YOUNG_EVERY_S`,
so that it holds what a few slices allocated, and what survives that is frozen (moved out of
the collector's view, in constant time) instead of walked again by older collections, which
would walk the whole heap. Frozen objects are still freed when their last reference goes; only
cycles among them wait, for :meth:`Collector.full`, which the worker runs when it has been idle
a while.

Survivors are frozen after one young collection, not two: the worker makes almost no cyclic
garbage (in the backfill benchmark, 176 young and middle collections found 96 unreachable
objects in all), so a second walk only cost time. Measured there, three paired runs: the
collections took 1.42-1.57 s before and 0.65-0.79 s after; 4,013-4,134 orders/s before and
4,850-5,200 after.
"""

from __future__ import annotations

import gc
import time

from streams.runtime import metrics

#: Least time between two young collections.
YOUNG_EVERY_S = 0.05
#: Least time between two full collections (run only while idle).
FULL_EVERY_S = 60.0
#: Least time between two counts of the frozen objects (``segmenter_gc_frozen_objects``).
#: Counting walks every frozen object (``gc.get_freeze_count`` walks the list: 20 ms for two
#: million), so it is done here, now and then, and not on each scrape of the metrics: scraped
#: every 0.2 s by the benchmark, the count took 8% of the worker's samples.
COUNT_FROZEN_EVERY_S = 30.0
#: CPython's own collections stay on, as a safety net for a loop that never reaches a step
#: boundary: far above what the worker's own collections let accumulate.
SAFETY_THRESHOLDS = (200_000, 100, 1_000_000)


class Collector:
    """Young collections at step boundaries, their survivors frozen; full ones when idle.

    >>> collector = Collector(young_every_s=0.0)
    >>> collector.start()
    >>> collector.between_steps(); collector.young
    1
    >>> collector.full(); collector.stop()
    """

    def __init__(self, young_every_s: float = YOUNG_EVERY_S) -> None:
        self.young_every_s = young_every_s
        self.young = 0
        self.collected_at = self.full_at = time.perf_counter()
        self.counted_at = -COUNT_FROZEN_EVERY_S

    def start(self) -> None:
        """What is loaded by now (modules, settings, the model) is never garbage."""
        gc.freeze()
        gc.set_threshold(*SAFETY_THRESHOLDS)
        self._count_frozen()

    def between_steps(self) -> None:
        now = time.perf_counter()
        if now - self.collected_at < self.young_every_s:
            return
        self.young += 1
        gc.collect(0)
        gc.freeze()
        if now - self.counted_at > COUNT_FROZEN_EVERY_S:
            self._count_frozen()
        self.collected_at = time.perf_counter()
        metrics.GC_SECONDS.labels("young").observe(self.collected_at - now)

    def idle(self) -> None:
        """The worker has been idle a while: a full collection, at most every
        :data:`FULL_EVERY_S`."""
        if time.perf_counter() - self.full_at > FULL_EVERY_S:
            self.full()

    def full(self) -> None:
        """Collect everything, frozen objects included (cycles among them), then freeze the
        survivors again. Walks the whole heap: only while the worker is idle."""
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._count_frozen()
        self.collected_at = self.full_at = time.perf_counter()
        metrics.GC_SECONDS.labels("full").observe(self.full_at - started)

    def _count_frozen(self) -> None:
        metrics.GC_FROZEN.set(gc.get_freeze_count())
        self.counted_at = time.perf_counter()

    def stop(self) -> None:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


#: The process's collector: one per process, as the garbage collector is.
COLLECTOR = Collector()
