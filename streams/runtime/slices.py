"""Giving the event loop its turn during a long step: a step that loops over a batch's users
checks :meth:`SliceTimer.due` between two of them and, once a slice's time has passed, awaits
:meth:`SliceTimer.pause` (the worker's loop budget is 100 ms; no step may hold it that long).
And sizing the steps: :func:`next_batch_limit` keeps a batch (or a slice of time-driven work)
to about a time budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar

from streams.runtime.collector import COLLECTOR

#: How long a step may hold the loop before it pauses.
SLICE_S = 0.03
#: A pause is a short timer, not ``sleep(0)``: a task that sleeps 0 is queued ahead of the
#: timers that fell due meanwhile, so a timer (the loop-lag probe, Faust's and aiokafka's own)
#: waited for two slices; a timer due later than theirs lets them run first.
PAUSE_S = 0.0001
#: A batch's target processing time, and the smallest batch it may come to. A larger batch
#: costs less per event (a user with several of its events is evaluated once: 197 us per
#: event at 100 events, 92 us at 1,000, on session traffic); the loop gets its turn every
#: :data:`SLICE_S` of it (see above).
BATCH_BUDGET_S = 0.25
MIN_BATCH = 50


class SliceTimer:
    """Counts a step's time on the loop since its last pause.

    >>> slices = SliceTimer(slice_s=0.0)
    >>> slices.due()
    True
    >>> asyncio.run(slices.pause_if_due())
    """

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self.pause_at = time.perf_counter() + slice_s

    def due(self) -> bool:
        return time.perf_counter() > self.pause_at

    def restart(self) -> None:
        self.pause_at = time.perf_counter() + self.slice_s

    def turn(self) -> Generator[None, None, None]:
        """In a sliced generator (``yield from slices.turn()``): pause (a bare ``yield``) if
        the slice is over."""
        if self.due():
            yield
            self.restart()

    async def pause_if_due(self) -> None:
        """In a coroutine: give the loop its turn if the slice is over."""
        if self.due():
            await give_turn()
            self.restart()


async def give_turn() -> None:
    """A pause between two slices: the collector runs, then the loop turns."""
    COLLECTOR.between_steps()
    await asyncio.sleep(PAUSE_S)


Result = TypeVar("Result")


def run_through(steps: Generator[None, None, Result]) -> Result:
    """A sliced step in one go, without pauses (tools and tests)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def run_sliced(steps: Generator[None, None, Result]) -> Result:
    """A sliced step on the loop: the collector runs and the loop turns at each pause."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await give_turn()


def next_batch_limit(limit: int, taken: int, took_s: float, most: int,
                     budget_s: float = BATCH_BUDGET_S) -> int:
    """The next batch's (or slice's) size limit: processing it takes about ``budget_s``,
    whatever an event costs (users with long histories, slow CPUs).

    >>> next_batch_limit(2000, 2000, 1.0, 2000), next_batch_limit(100, 100, 0.01, 500)
    (500, 126)
    """
    if took_s > budget_s:
        return max(MIN_BATCH, int(taken * budget_s / took_s))
    if taken >= limit and took_s < budget_s / 2:
        return min(most, int(limit * 1.25) + 1)
    return limit
