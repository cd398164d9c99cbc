"""Input held by a coalescing worker until the users it touched are evaluated and written.

While a worker catches up on a backlog it folds users' events in and evaluates each user once
per flush (:meth:`streams.runtime.batch.BatchProcessor.settle`), as Kafka Streams' record cache does
between commits. The messages of those batches are acknowledged only after the flush has
written everything, so a crash or a rebalance before then reads them again; nothing folded in
but unwritten can be lost, and the event-id deduplication makes the second reading harmless.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from segmenter.settings import WorkerSettings


class HeldInput:
    """Messages, their events' counts and the writes already sent, until the flush."""

    def __init__(self, settings: WorkerSettings, untrack: Callable[[Any], None],
                 on_clear: Callable[[], None]) -> None:
        """``untrack``: stop the consumer waiting for a dropped message's acknowledgement;
        ``on_clear``: forget the state folded in from the dropped messages."""
        self.flush_s = settings.backfill_flush_s
        self.max_users = settings.backfill_max_users
        self.untrack = untrack
        self.on_clear = on_clear
        self.messages: list[Any] = []
        self.events: Counter[str] = Counter()
        self.sent: list[Awaitable[Any]] = []
        self.since = 0.0
        #: Moves on at every :meth:`clear`: a flush that began before must not acknowledge.
        self.generation = 0

    def __bool__(self) -> bool:
        return bool(self.messages)

    def hold(self, messages: list[Any], events: Counter[str],
             sent: list[Awaitable[Any]]) -> None:
        if not self.messages:
            self.since = time.monotonic()
        self.messages += messages
        self.events.update(events)
        self.sent += sent

    def due(self, waiting_users: int) -> bool:
        """Time to flush: held long enough, or too many users waiting."""
        return (time.monotonic() - self.since >= self.flush_s
                or waiting_users >= self.max_users)

    def take(self) -> tuple[list[Any], Counter[str], list[Awaitable[Any]], int]:
        """Everything held (the flush acknowledges it once written), and the generation."""
        taken = self.messages, self.events, self.sent, self.generation
        self.messages, self.events, self.sent = [], Counter(), []
        return taken

    def clear(self) -> None:
        """The partitions are being revoked (Faust's flow control calls this): drop what is
        held; the consumer seeks back to the committed offsets and reads it again."""
        for message in self.messages:
            self.untrack(message)
        self.messages, self.events, self.sent = [], Counter(), []
        self.generation += 1
        self.on_clear()
