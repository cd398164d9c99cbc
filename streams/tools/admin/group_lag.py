"""How far a consumer group (the workers) is behind on a topic: end offsets less committed.

Used by ``segmenter replay`` to show the workers catching up on what it produced, and by the
benchmark to time a backfill end to end. Faust commits offsets every few seconds
(``broker_commit_interval``), so the lag reaches 0 a little after the last event is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.runtime.kafka_options import as_options


async def group_lag(kafka: str | dict[str, Any], group: str, topics: list[str]) -> int:
    """Messages of ``topics`` that ``group`` has not committed yet (``kafka``: a bootstrap
    address or the clients' options)."""
    options = as_options(kafka)
    admin = AIOKafkaAdminClient(**options)
    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()  # the topics' partitions, fresh
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(max(0, end - max(0, committed[tp].offset if tp in committed else 0))
                   for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def follow_lag(kafka: str | dict[str, Any], group: str, topics: list[str],
                     on_lag: Callable[[int], None], stall_s: float = 60.0,
                     poll_s: float = 0.5) -> bool:
    """Report the group's lag until it is 0 (True), or has not fallen for ``stall_s`` (False:
    no worker is consuming)."""
    best, best_at = None, time.monotonic()
    while True:
        lag = await group_lag(kafka, group, topics)
        on_lag(lag)
        if lag == 0:
            return True
        if best is None or lag < best:
            best, best_at = lag, time.monotonic()
        elif time.monotonic() - best_at > stall_s:
            return False
        await asyncio.sleep(poll_s)
