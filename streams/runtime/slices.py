"""Giving the event loop its turn during a long step: a step that loops over a batch's users
checks :meth:`SliceTimer.due` between two of them and, once a slice's time has passed, awaits
:meth:`SliceTimer.pause` (the worker's loop budget is 100 ms; no step may hold it that long).
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
