"""Helpers for integration tests: producing, consuming, waiting."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from features.events import EVENT_TYPES
from segmenter.engine import SegmentEngine
from segmenter.settings import load_settings
from streams.tools.local.embedded import free_port

#: Input topic -> event kind, and back, as configured by default.
KIND = load_settings(environ={}).kafka.topics.inputs
TOPIC = load_settings(environ={}).kafka.topics.by_kind


def worker_env(kafka: str, redis_url: str, tmp_path: Path, *, rules: str | None = None,
               config: str = "") -> dict[str, str]:
    """The environment of a test's worker: its own data directory and metrics port, a short
    session timeout, ``config`` (YAML) on top, and ``rules`` as its rule file if given."""
    path = tmp_path / "test.yaml"
    path.write_text("kafka:\n  session_timeout_s: 6\n"
                    f"worker:\n  data_dir: {tmp_path / 'data'}\n  log_level: info\n" + config)
    env = {"SEGMENTER_KAFKA_BOOTSTRAP": kafka, "SEGMENTER_REDIS_URL": redis_url,
           "SEGMENTER_METRICS_PORT": str(free_port()), "SEGMENTER_CONFIG": str(path)}
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules)
        env["SEGMENTER_RULES_FILE"] = str(tmp_path / "rules.yaml")
    return env


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic, key, value) messages and wait until the broker has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def event_message(topic: str, event: dict[str, Any]) -> tuple[str, bytes, bytes]:
    entity = event.get("user_id") or event["anonymous_id"]
    return topic, entity.encode(), orjson.dumps(event)


async def consume_all(
    bootstrap: str,
    topics: str | Sequence[str],
    until: Callable[[list[Any]], bool],
    timeout: float = 60.0,
    settle_ms: int = 0,
) -> list[Any]:
    """Read topics from the start until ``until(messages)`` holds or time runs out.

    ``settle_ms``: then read a little longer, so a test can see that nothing extra arrived.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            messages.extend(record for records in batch.values() for record in records)
        if settle_ms:
            extra = await consumer.getmany(timeout_ms=settle_ms)
            messages.extend(record for records in extra.values() for record in records)
    finally:
        await consumer.stop()
    return messages


async def consume_to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every message of ``topic`` up to its end as of the call (no waiting for more).

    Past the end offsets too, until a fetch brings nothing: after a restart from its S3
    storage, Tansu reports end offsets that stay dozens of records short of what it holds
    and serves (measured: 685 against 718, unchanged 35 s later).
    """
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        messages: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=200)
            messages.extend(record for records in batch.values() for record in records)
        while batch := await consumer.getmany(timeout_ms=200):
            messages.extend(record for records in batch.values() for record in records)
        return messages
    finally:
        await consumer.stop()


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 60.0,
    what: str | Callable[[], str] = "condition",
) -> None:
    """Poll ``check`` until it holds; ``what`` (or its result) explains a time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    explanation = what if isinstance(what, str) else what()
    raise AssertionError(f"timed out after {timeout}s waiting for {explanation}")


def batch_segments(
    events: list[tuple[str, dict]], environ: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Batch recomputation with the same engine: all events, evaluated at the last event time."""
    engine = SegmentEngine(load_settings(environ=environ or {}))
    parsed = [EVENT_TYPES[KIND[topic]].model_validate(event) for topic, event in events]
    watermark = max(event.ts for event in parsed)
    by_user = defaultdict(list)
    for event in parsed:
        by_user[event.entity_id].append(event)
    records = {}
    for user_id, user_events in by_user.items():
        records[user_id] = engine.new_record()
        engine.learn(user_id, records[user_id], sorted(user_events, key=lambda e: e.ts),
                     watermark)
    engine.refresh_population()  # F and M by the final population's quantiles
    for user_id, record in records.items():
        engine.rescore(user_id, record, watermark)
    return {user_id: dict(record.segments) for user_id, record in records.items()}
