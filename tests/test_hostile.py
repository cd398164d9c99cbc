"""Hostile input at scale: huge and non-finite numbers, deep nesting, huge strings, bad UTF-8,
wrong types, duplicated keys, far-past and far-future times. The decoder and the batch step never
raise (property tests, no I/O); a live worker fed 10,000 such messages never crashes,
dead-letters every message it rejects with a reason, and keeps a control user exact."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from hostile import TOPICS, hostile_payload, valid_event
from hypothesis import given, settings
from hypothesis import strategies as st
from support import consume_all, wait_for
from test_faults import ready, worker_env

from segmenter.engine import SegmentEngine
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.codec import InvalidEvent, decode_message
from streams.runtime.messages import Message
from streams.tools.local.services import WorkerProcess

SETTINGS = load_settings()
REASONS = {"empty", "invalid_json", "not_an_object", "missing_field", "invalid_field",
           "ts_in_future", "too_late", "bad_envelope", "too_large", "unknown_topic"}


def hostile_batch(seed: int, count: int) -> list[Message]:
    rng = random.Random(seed)
    now = time.time() - 300
    messages = []
    for offset in range(count):
        kind = rng.choice(list(TOPICS))
        user = f"h{rng.randrange(50)}"
        value = hostile_payload(rng, kind, user, offset, now + offset / 1000)
        messages.append(Message(TOPICS[kind], 0, offset, user.encode(), value, now))
    return messages


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32))
def test_the_decoder_never_raises_and_keeps_valid_events_in_bounds(seed: int) -> None:
    for message in hostile_batch(seed, 20):
        for result in decode_message(next(k for k, t in TOPICS.items() if t == message.topic),
                                     message.value):
            if isinstance(result, InvalidEvent):
                assert result.reason in REASONS and result.detail
            else:
                # ISO text: years 1 to 9999 (the future is judged against the wall clock
                # later, by the worker); numbers: epoch seconds from 1970 to 2100.
                assert -62_135_596_800 <= result.ts < 253_402_300_800


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32))
def test_the_batch_step_takes_any_hostile_batch_whole(seed: int) -> None:
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    messages = hostile_batch(seed, 200)
    outcome = processor.process(messages, lambda u: None, lambda u: True)
    assert outcome.failures == []
    assert {d.reason for d in outcome.dead_letters} <= REASONS
    for record in outcome.records.values():
        record.to_bytes()  # storable: nothing beyond 64-bit integers


@pytest.mark.integration
async def test_a_live_worker_takes_10000_hostile_messages(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    now = time.time() - 300
    control = [(TOPICS["order"], b"control", orjson.dumps(valid_event("order", "control", n,
                                                                       now + n)))
               for n in range(4)]
    hostile = [(m.topic, m.key, m.value) for m in hostile_batch(7, 10_000)]
    sent = await _produce(kafka_bootstrap, hostile[:5000] + control + hostile[5000:])
    with WorkerProcess(worker_env(kafka_bootstrap, redis_url, tmp_path),
                       tmp_path / "w.log") as worker:
        await ready(worker)
        await wait_for(lambda: _true(worker.progress()[0] >= len(sent)), timeout=120,
                       what=lambda: f"{worker.progress()} of {len(sent)} messages taken")
        letters = await consume_all(kafka_bootstrap, "shop.deadletter", until=lambda got: False,
                                    timeout=6)
        store = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await wait_for(lambda: _control_exact(store), timeout=30, what="the control user")
        finally:
            await store.aclose()
        assert worker.alive and "Traceback" not in worker.log()
        assert worker.metric("segmenter_user_failures_total") == 0
    lettered = {}
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["deadletter.reason"].decode() in REASONS
        where = (headers["deadletter.topic"].decode(), int(headers["deadletter.partition"]),
                 int(headers["deadletter.offset"]))
        lettered[where] = headers["deadletter.reason"].decode()
    # Every message the decoder rejects is dead-lettered; every one dead-lettered is
    # rejected by the decoder or by time (too late or in the future).
    for where, value in sent.items():
        kind = next(k for k, t in TOPICS.items() if t == where[0])
        invalid = any(isinstance(r, InvalidEvent) for r in decode_message(kind, value))
        if invalid:
            assert where in lettered, (where, value[:200])
        elif where in lettered:
            assert lettered[where] in ("too_late", "ts_in_future"), (where, lettered[where])
    assert sum(1 for reason in lettered.values() if reason not in ("too_late", "ts_in_future"))


async def _produce(bootstrap: str, messages: list[tuple[str, bytes, bytes]],
                   ) -> dict[tuple[str, int, int], bytes]:
    """Send; return each message's value by where it landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2**20 + 4096)
    await producer.start()
    try:
        futures = [(await producer.send(topic, value, key=key), value)
                   for topic, key, value in messages]
        landed = {}
        for future, value in futures:
            meta = await future
            landed[(meta.topic, meta.partition, meta.offset)] = value
        return landed
    finally:
        await producer.stop()


async def _control_exact(store: redis.Redis) -> bool:
    held = await store.hgetall("seg:user:control")
    return held.get("four") == "four" and held.get("repeat") == "repeat"


async def _true(value: bool) -> bool:
    return value
