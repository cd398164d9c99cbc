"""Producing events at a rate: the one paced producer of the simulator and of ``replay``.

Events are sent in order, keyed by user (:func:`features.events.user_key`, so each lands on its
user's partition), with their event time as the record timestamp, ``rate`` events per second of
wall time: every ``TICK_S`` the events due by then go as one batch, whose delivery is awaited
before the next. ``rate <= 0`` sends as fast as the broker acknowledges, ``MAX_BATCH`` at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from features.events import user_key
from streams.runtime.codec import event_time_ms

#: Pacing tick: every tick, the events due by then are sent as one batch.
TICK_S = 0.01
#: Most events handed to the producer before awaiting their delivery.
MAX_BATCH = 5_000

#: ``on_progress(sent, total)``, called after each delivered batch.
ProgressCallback = Callable[[int, int], None]
#: The topic an event goes to.
TopicOf = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Paced:
    """What :func:`produce_paced` delivered."""

    sent: int
    elapsed_s: float
    #: Event time of the last event delivered (None: none was).
    last_ts: float | None


async def produce_paced(
    producer: AIOKafkaProducer, events: Sequence[Mapping[str, Any]], topic_of: TopicOf,
    rate: float, *, duration: float = math.inf, on_progress: ProgressCallback | None = None,
) -> Paced:
    """Send ``events`` in order, ``rate`` per second, until all are sent or ``duration`` is up."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration
    sent, last_ts = 0, None
    while sent < len(events) and loop.time() < deadline:
        tick_at = loop.time()
        due = len(events) if rate <= 0 else int((tick_at - started) * rate) + 1
        batch = events[sent:min(due, len(events), sent + MAX_BATCH)]
        if batch:
            await send_batch(producer, batch, topic_of)
            sent += len(batch)
            last_ts = batch[-1].get("ts")
            if on_progress is not None:
                on_progress(sent, len(events))
        if rate > 0 and sent < len(events):
            await asyncio.sleep(max(0.0, tick_at + TICK_S - loop.time()))
    return Paced(sent=sent, elapsed_s=loop.time() - started, last_ts=last_ts)


async def send_batch(
    producer: AIOKafkaProducer, batch: Sequence[Mapping[str, Any]], topic_of: TopicOf
) -> None:
    """Hand a batch to the producer, then wait until the broker has acknowledged all of it.

    ``asyncio.wait`` rather than ``gather``: cancelling us must not cancel the delivery futures,
    the producer still delivers (and ``stop`` flushes) what it was handed.
    """
    futures = [
        await producer.send(topic_of(event), orjson.dumps(event),
                            key=user_key(event.get("user_id"), event.get("anonymous_id")).encode(),
                            timestamp_ms=event_time_ms(event))
        for event in batch
    ]
    done, _ = await asyncio.wait(futures)
    for future in done:
        future.result()  # raise the first delivery error, if any
