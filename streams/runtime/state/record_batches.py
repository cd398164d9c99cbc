"""Produced records gathered per topic partition into aiokafka record batches.

``producer.send`` costs about 20 us a record in Python (partitioner, accumulator, a future
each); a batch's change events and changelog records are thousands per second, so they are
appended to aiokafka's batch builders (``create_batch`` / ``send_batch``: a microsecond or two
a record) and sent as whole batches. Records keep their order within each partition, which is
all Kafka orders. Partitions are chosen as Kafka's default partitioner does
(:mod:`streams.runtime.partitioning`), so a user's change events land where keyed sends would put
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

#: Delivered futures read between turns of the event loop (see :func:`written`).
YIELD_EVERY = 2000


class RecordBatches:
    """Records for several topic partitions, sent as record batches by :meth:`send`."""

    def __init__(self, producer: Any) -> None:
        """``producer``: a started ``aiokafka.AIOKafkaProducer``."""
        self.producer = producer
        self._open: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[str, int, Any]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        where = (topic, partition)
        batch = self._open.get(where)
        if batch is None or batch.append(timestamp=None, key=key, value=value) is None:
            if batch is not None:  # full: it goes out as it is, a new one follows
                self._full.append((topic, partition, batch))
            batch = self._open[where] = self.producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value) is None:
                raise MessageSizeTooLargeError(
                    f"a record for {topic} of {len(value or b'')} bytes exceeds a batch")

    async def send(self) -> list[asyncio.Future[Any]]:
        """Queue every batch with the producer; the futures resolve once each is delivered."""
        batches = self._full + [(topic, partition, batch)
                                for (topic, partition), batch in self._open.items()]
        self._open, self._full = {}, []
        return [await self.producer.send_batch(batch, topic, partition=partition)
                for topic, partition, batch in batches]


async def written(sent: list[Awaitable[Any]]) -> None:
    """Wait for every produced record's delivery (raising the first failure).

    Not ``asyncio.gather``: gathering a flush's tens of thousands of futures, most of them
    already delivered, schedules a callback for each and holds the loop for a third of a
    second; a delivered future is just read.
    """
    for count, future in enumerate(sent, 1):
        if isinstance(future, asyncio.Future) and future.done():
            future.result()
        else:
            await future
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
