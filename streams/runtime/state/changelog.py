"""Finish a table recovery that stopped short: read changelog partitions to their real end.

Faust recovers a table by reading each changelog partition up to the end offset the broker
reports. Tansu (the embedded broker) reports the base offset of the last record *batch* + 1,
not the last record + 1, so Faust stops early and records written in one batch are lost. Reading
on from that reported end until a fetch comes back empty gets them all; on Apache Kafka the
first fetch is already empty, so this costs one short fetch per partition at startup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

#: How long an empty fetch must stay empty before the partition counts as read to the end.
QUIET_MS = 300


async def read_changelog_tail(
    kafka: dict[str, Any], topic: str, partitions: Iterable[int]
) -> list[tuple[bytes, bytes | None]]:
    """(key, value) records past each partition's reported end offset, in offset order.
    ``kafka``: the clients' options (:func:`streams.runtime.kafka_options.client_options`)."""
    tps = [TopicPartition(topic, partition) for partition in sorted(set(partitions))]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        **kafka, enable_auto_commit=False, group_id=None,
        fetch_max_wait_ms=QUIET_MS // 3,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        records: list[tuple[bytes, bytes | None]] = []
        while batch := await consumer.getmany(*tps, timeout_ms=QUIET_MS):
            for messages in batch.values():
                records.extend((message.key, message.value) for message in messages)
        return records
    finally:
        await consumer.stop()
