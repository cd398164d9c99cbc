"""The worker's input, handed over from Faust's consumer a fetch at a time, bounded, and
released in event-time order across the input partitions.

Faust delivers each message to an agent on its own: a task pair per message, a channel queue,
the stream's processors, and ``take_events`` to gather them back into a batch. That path costs
more than all of the worker's own work on an event. The worker needs batches, so the consumer
(see :mod:`streams.runtime.app`) puts the input topics' messages of each fetch here as they come,
and the worker takes everything that may go in one go.

**Event-time alignment** (as Kafka Streams aligns the partitions of a task): messages wait in
one queue per partition and leave in the order of their Kafka timestamps (event time: the
replay tool stamps each message with its event's time). A message leaves only when no other
partition that still has input waiting on the broker could bring an earlier one; a partition
whose queue is empty holds the others back for at most ``align_wait_s``; live messages
(stamped within :data:`LIVE_WINDOW_S` of the wall clock) never wait. A partition whose
queue is full is not fetched until it drains, so one topic running ahead in a backlog waits
for the others instead of filling the inbox.

Offsets stay Faust's business: a message is tracked as unacknowledged when it arrives and the
worker acknowledges it once its batch is written, so Faust commits exactly what was processed
and waits for the batch in hand before a rebalance. On a rebalance, messages not yet taken are
dropped (:meth:`BatchInbox.clear`); the partitions' next owner reads them again. Faust clears
the inbox once more when its recovery resumes the flow; what it then drops is read again
(``streams.runtime.app._InboxFlow``).

>>> import asyncio
>>> from types import SimpleNamespace as Msg
>>> async def demo():
...     inbox = BatchInbox({"clicks", "orders"}, max_messages=10)
...     await inbox.put([Msg(tp="clicks/0", timestamp=t, offset=t, value=b"{}")
...                       for t in (1, 5, 9)])
...     await inbox.put([Msg(tp="orders/0", timestamp=t, offset=t, value=b"{}") for t in (2, 3)])
...     return [m.timestamp for m in await inbox.take(100)], len(inbox)
>>> asyncio.run(demo())
([1, 2, 3, 5, 9], 0)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

#: Messages stamped within this many seconds of the wall clock are live: they never wait.
LIVE_WINDOW_S = 10.0

#: (partition, offset of its last message here or None) -> whether the broker has more.
HasMore = Callable[[Any, int | None], bool]


class _Partitions:
    """Hooks into the consumer; the defaults (used without a consumer) never wait or pause."""

    assigned: Callable[[], Iterable[Any]] = staticmethod(lambda: ())
    has_more: HasMore = staticmethod(lambda tp, last_offset: False)
    pause: Callable[[Any], None] = staticmethod(lambda tp: None)
    resume: Callable[[Any], None] = staticmethod(lambda tp: None)


class BatchInbox:
    """Messages of ``topics`` waiting for the worker; ``put`` waits while it is full."""

    def __init__(self, topics: Iterable[str], max_messages: int,
                 partition_cap: int | None = None, align_wait_s: float = 0.2,
                 on_drop: Callable[[Any], None] = lambda message: None) -> None:
        """``on_drop``: called for each message dropped by :meth:`clear` (to untrack it)."""
        self.topics = frozenset(topics)
        self.max_messages = max_messages
        #: A partition with this many messages waiting here is paused (not fetched).
        self.partition_cap = partition_cap or max(1, max_messages // 2)
        self.align_wait_s = align_wait_s
        self.on_drop = on_drop
        self.partitions = _Partitions()
        self._queues: dict[Any, deque[Any]] = {}
        self._last_offset: dict[Any, int] = {}
        self._last_ts: dict[Any, float] = {}
        self._paused: set[Any] = set()
        self._size = 0
        self._max_bytes: int | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def paused(self) -> set[Any]:
        """The partitions paused because their queue here is full."""
        return self._paused

    def __len__(self) -> int:
        return self._size

    @property
    def limit(self) -> int:
        """Messages held before ``put`` waits: at least a cap's worth for every assigned
        partition and one more, so that partitions paused at their cap never block the
        fetch loop's delivery of the others (which alignment is waiting for)."""
        assigned = sum(1 for _ in self.partitions.assigned())
        return max(self.max_messages, self.partition_cap * (assigned + 1))

    async def put(self, messages: list[Any]) -> None:
        """Add a fetch's messages; waits (flow control) while the worker is behind."""
        try:
            while self._size >= self.limit:
                self._room.clear()
                await self._room.wait()
        except asyncio.CancelledError:  # a rebalance stopped the flow: they will be read again
            for message in messages:
                self.on_drop(message)
            raise
        for message in messages:
            queue = self._queues.get(message.tp)
            if queue is None:
                queue = self._queues[message.tp] = deque()
            queue.append(message)
            self._last_offset[message.tp] = message.offset
            self._last_ts[message.tp] = message.timestamp
            if len(queue) >= self.partition_cap and message.tp not in self._paused:
                self._paused.add(message.tp)
                self.partitions.pause(message.tp)
        self._size += len(messages)
        self._arrived.set()

    async def take(self, max_messages: int, timeout: float | None = None,
                   max_bytes: int | None = None) -> list[Any]:
        """Up to ``max_messages`` (and about ``max_bytes`` of values: a batched envelope
        carries many events) in event-time order; waits for the first message, or at most
        ``timeout`` seconds (then returns an empty list)."""
        self._max_bytes = max_bytes
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._size:
            if not await self._wait_arrival(deadline):
                return []
        taken = self._release(max_messages, force=False)
        if not taken:  # a partition with input on the broker is empty here: wait a little
            await self._wait_arrival(time.monotonic() + self.align_wait_s)
            taken = self._release(max_messages, force=not self._arrived.is_set())
            if not taken:
                taken = self._release(max_messages, force=True)
        return taken

    def clear(self) -> dict[Any, int]:
        """Drop what is waiting; return each partition's first offset dropped."""
        dropped: dict[Any, int] = {}
        for tp, queue in self._queues.items():
            if queue:
                dropped[tp] = min(message.offset for message in queue)
            while queue:
                self.on_drop(queue.popleft())
        self._size = 0
        for tp in self._paused:
            self.partitions.resume(tp)
        self._paused.clear()
        self._queues.clear()
        self._last_offset.clear()
        self._last_ts.clear()
        self._room.set()
        return dropped

    async def _wait_arrival(self, deadline: float | None) -> bool:
        self._arrived.clear()
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(self._arrived.wait(), wait)
        except TimeoutError:
            return False
        return True

    def _release(self, max_messages: int, force: bool) -> list[Any]:
        """Heads in timestamp order, each only if no partition that is empty here but has
        more on the broker could still bring an earlier message (unless ``force``)."""
        frontier = float("inf")
        if not force:
            for tp in self.partitions.assigned():
                if not self._queues.get(tp) and self._has_more(tp):
                    frontier = min(frontier, self._last_ts.get(tp, float("-inf")))
        taken: list[Any] = []
        heads = {tp: queue for tp, queue in self._queues.items() if queue}
        room = self._max_bytes or float("inf")
        # Live input (stamped within the last LIVE_WINDOW_S) never waits: aligning matters
        # when history is read, and live traffic's small disorder is what lateness covers.
        live_after = time.time() - LIVE_WINDOW_S
        while heads and len(taken) < max_messages and room > 0:
            tp = min(heads, key=lambda tp: heads[tp][0].timestamp)
            queue = heads[tp]
            if queue[0].timestamp > frontier and queue[0].timestamp < live_after:
                break
            taken.append(queue.popleft())
            room -= len(taken[-1].value or b"")
            if not queue:
                del heads[tp]
                if not force and self._has_more(tp):
                    frontier = min(frontier, self._last_ts[tp])
        self._size -= len(taken)
        for tp in [tp for tp in self._paused if len(self._queues[tp]) < self.partition_cap // 2]:
            self._paused.discard(tp)
            self.partitions.resume(tp)
        if self._size < self.limit:
            self._room.set()
        return taken

    def caught_up(self, topic: str, partition: int) -> bool:
        """Nothing of this partition waits here, and the broker has nothing more of it."""
        tp = (topic, partition)  # equal to (and hashed as) the consumer's partition tuples
        return not self._queues.get(tp) and not self._has_more(tp)

    def _has_more(self, tp: Any) -> bool:
        return self.partitions.has_more(tp, self._last_offset.get(tp))
