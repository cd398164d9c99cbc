"""A user's stored features and recent segment changes, read from Kafka for the explorer.

Redis holds only memberships: the user record (features) lives in the workers' state table,
whose changelog topic ``{app_id}-users-changelog`` keeps every record under the user's id, and
the change events are on ``segments.changes``, keyed by user id. Both are partitioned by the key
(Kafka's default partitioner), so a lookup reads one partition, from its end backwards in
growing windows, until it has what it needs or has read ``max_records``. No extra write on the
workers' hot path, no per-user lists in Redis: a lookup is an operator's occasional question.
An active user is found near the end; a user quiet for long in a huge shop may be past
``max_records`` (the page says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from segmenter.records import UserRecord
from segmenter.settings import Settings
from streams.runtime.kafka_options import client_options
from streams.runtime.partitioning import partition_of
from streams.runtime.state.changelog import QUIET_MS

FIRST_WINDOW = 2000


class KafkaLookup:
    def __init__(self, settings: Settings, max_records: int = 200_000) -> None:
        self.settings = settings
        self.max_records = max_records
        self.changelog = f"{settings.app_id}-users-changelog"

    async def features(self, user_id: str) -> dict[str, float] | None:
        """The user's documented features as of now (wall clock), from their latest stored
        record; None if no record was found (unknown, forgotten, or too far back)."""
        found = await self._latest(self.changelog, user_id, lambda got: bool(got))
        if not found or found[-1].value is None:  # a tombstone: the user was forgotten
            return None
        record = UserRecord.from_bytes(found[-1].value, self.settings.features.params())
        return record.features.snapshot(max(time.time(), record.features.last_seen))

    async def changes(self, user_id: str, limit: int = 12) -> list[dict[str, Any]]:
        """The user's latest change events, newest first (repeated event ids once)."""
        found = await self._latest(self.settings.kafka.topics.changes, user_id,
                                   lambda got: len(got) >= limit)
        seen: set[str] = set()
        changes = []
        for message in reversed(found):
            change = orjson.loads(message.value)
            if change.get("event_id") not in seen and change.get("user_id") == user_id:
                seen.add(change.get("event_id"))
                changes.append(change)
        return changes[:limit]

    async def _latest(self, topic: str, user_id: str,
                      enough: Callable[[list[ConsumerRecord]], bool]) -> list[ConsumerRecord]:
        """The records of ``user_id`` on its partition of ``topic``, oldest first, reading
        backwards from the end until ``enough`` holds or ``max_records`` were read."""
        key = user_id.encode()
        consumer = AIOKafkaConsumer(**client_options(self.settings.kafka),
                                    enable_auto_commit=False, group_id=None,
                                    fetch_max_wait_ms=QUIET_MS // 3)
        await consumer.start()
        try:
            partitions = (await consumer.topics() and consumer.partitions_for_topic(topic))
            if not partitions:
                return []
            tp = TopicPartition(topic, partition_of(key, len(partitions)))
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            found: list[ConsumerRecord] = []
            stop, window = None, FIRST_WINDOW
            low = max(begin, end - window)
            while True:
                chunk = await _read(consumer, tp, low, stop)
                found = [record for record in chunk if record.key == key] + found
                if enough(found) or low <= begin or end - low >= self.max_records:
                    return found
                stop, window = low, window * 4
                low = max(begin, low - window)
        finally:
            await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, low: int,
                stop: int | None) -> list[ConsumerRecord]:
    """Records from offset ``low`` up to ``stop`` (None: to the partition's real end)."""
    consumer.seek(tp, low)
    records: list[ConsumerRecord] = []
    while batch := (await consumer.getmany(tp, timeout_ms=QUIET_MS)).get(tp):
        if stop is not None:
            records += [record for record in batch if record.offset < stop]
            if batch[-1].offset >= stop - 1:
                break
        else:
            records += batch
    return records
