"""The worker's input, handed over from Faust's consumer a fetch at a time, bounded.

Faust delivers each message to an agent on its own: a task pair per message, a channel queue,
the stream's processors, and ``take_events`` to gather them back into a batch. That path costs
more than all of the worker's own work on an event. The worker needs batches, so the consumer
(see :mod:`streams.faust_app`) puts the input topics' messages of each fetch here as they come,
and the worker takes everything waiting in one go.

Offsets stay Faust's business: a message is tracked as unacknowledged when it arrives and the
worker acknowledges it once its batch is written, so Faust commits exactly what was processed
and waits for the batch in hand before a rebalance. On a rebalance, messages not yet taken are
dropped (:meth:`BatchInbox.clear`); the partitions' next owner reads them again.

>>> import asyncio
>>> async def demo():
...     inbox = BatchInbox({"shop.clicks"}, max_messages=10)
...     await inbox.put(["m1", "m2"])
...     return await inbox.take(100), len(inbox)
>>> asyncio.run(demo())
(['m1', 'm2'], 0)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any


class BatchInbox:
    """Messages of ``topics`` waiting for the worker; ``put`` waits while it is full."""

    def __init__(self, topics: Iterable[str], max_messages: int,
                 on_drop: Callable[[Any], None] = lambda message: None) -> None:
        """``on_drop``: called for each message dropped by :meth:`clear` (to untrack it)."""
        self.topics = frozenset(topics)
        self.max_messages = max_messages
        self.on_drop = on_drop
        self._messages: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._messages)

    async def put(self, messages: list[Any]) -> None:
        """Add a fetch's messages; waits (flow control) while the worker is behind."""
        try:
            while len(self._messages) >= self.max_messages:
                self._room.clear()
                await self._room.wait()
        except asyncio.CancelledError:  # a rebalance stopped the flow: they will be read again
            for message in messages:
                self.on_drop(message)
            raise
        self._messages.extend(messages)
        self._arrived.set()

    async def take(self, max_messages: int, timeout: float | None = None) -> list[Any]:
        """Everything waiting (up to ``max_messages``); waits for the first message, or at
        most ``timeout`` seconds (then returns an empty list)."""
        if not self._messages:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return []
        count = min(max_messages, len(self._messages))
        taken = [self._messages.popleft() for _ in range(count)]
        if len(self._messages) < self.max_messages:
            self._room.set()
        return taken

    def clear(self) -> None:
        """Drop what is waiting (the partitions are being revoked)."""
        while self._messages:
            self.on_drop(self._messages.popleft())
        self._room.set()
