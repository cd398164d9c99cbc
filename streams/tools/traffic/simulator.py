"""``segmenter simulate``: planted-persona shop traffic, produced to the input topics at a rate.

The events come from :func:`streams.tools.traffic.personas.plan_events` (days of shop history up to
``end_ts``) and are produced in event-time order, keyed by entity id, to the topic of their
kind, ``rate`` events per second of wall time (in small batches every ``TICK_S``), until all are
sent or ``duration`` seconds have passed. Cancelling :func:`simulate` still flushes what was
handed to the producer and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from segmenter.settings import Topics
from streams.runtime.codec import event_time_ms
from streams.tools.traffic.personas import (
    DAY,
    PERSONAS,
    UserPlan,
    entity_id,
    plan_events,
    plan_user,
)

#: Pacing tick: every tick, the events due by then are sent as one batch.
TICK_S = 0.01
#: Most events in one batch (also the batch size when ``rate <= 0``: as fast as possible).
MAX_BATCH = 5_000

#: ``on_progress(sent, planned)``, called after each delivered batch.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a simulation did: events planned and delivered, and how long producing took."""

    planned: int
    sent: int
    elapsed_s: float
    last_event_ts: float | None
    users: int = 0
    planning_s: float = 0.0

    def __str__(self) -> str:
        last = (datetime.fromtimestamp(self.last_event_ts, UTC).isoformat(timespec="seconds")
                if self.last_event_ts is not None else "-")
        rate = self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"sent {self.sent:,} of {self.planned:,} planned events from {self.users:,} "
                f"users in {self.elapsed_s:.1f} s ({rate:,.0f} events/s; planning took "
                f"{self.planning_s:.1f} s); last event time {last}")


def write_personas(path: Path, plans: Iterable[UserPlan]) -> int:
    """Write each user's planted persona as JSON Lines, in user order; return the line count.

    Each line is ``{"entity_id", "user_id", "anonymous_id", "persona"}`` (user_id may be null).
    """
    rows = sorted(plans, key=lambda plan: plan.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(plan.record()) + b"\n" for plan in rows))
    return len(rows)


def shifted_events(plans: Mapping[str, UserPlan], source: str, target: str, seed: int,
                   start: float, end: float) -> list[dict[str, Any]]:
    """Users planted as ``source`` behave as ``target`` from ``start`` to ``end`` (drift)."""
    events: list[dict[str, Any]] = []
    for plan in plans.values():
        if plan.persona == source:
            events += plan_user(plan.index, target, seed, start, end)[1]
    events.sort(key=lambda event: event["ts"])
    for n, event in enumerate(events):
        event["event_id"] = f"{seed}-shift-{n}"
    return events


def parse_shift(shift: str) -> tuple[str, str, float]:
    """``SOURCE=TARGET@FRACTION`` -> (source, target, fraction); ValueError saying why not.

    >>> parse_shift("window_shopper=bargain_hunter@0.7")
    ('window_shopper', 'bargain_hunter', 0.7)
    """
    try:
        personas, fraction = shift.split("@")
        source, target = personas.split("=")
        at = float(fraction)
    except ValueError:
        raise ValueError(f"must be SOURCE=TARGET@FRACTION, got {shift!r}") from None
    if source not in PERSONAS or target not in PERSONAS or not 0 < at < 1:
        raise ValueError(f"needs two of {', '.join(PERSONAS)} and 0 < FRACTION < 1, "
                         f"got {shift!r}")
    return source, target, at


def shift_personas(events: list[dict[str, Any]], plans: Mapping[str, UserPlan], shift: str,
                   seed: int, end: float, days: float) -> list[dict[str, Any]]:
    """``shift`` is ``SOURCE=TARGET@FRACTION``: from that point of the window on, the users
    planted as SOURCE behave as TARGET (their later SOURCE events are dropped)."""
    source, target, at = parse_shift(shift)
    start = end - days * DAY * (1 - at)
    moved = {ident for plan in plans.values() if plan.persona == source
             for ident in (plan.user_id, plan.anonymous_id) if ident}
    kept = [e for e in events if e["ts"] < start or (entity_id(e) not in moved
            and e.get("anonymous_id") not in moved)]
    return sorted(kept + shifted_events(plans, source, target, seed, start, end),
                  key=lambda event: event["ts"])


async def simulate(
    bootstrap: str,
    topics: Topics,
    users: int,
    rate: float | None,
    duration: float,
    seed: int,
    days: float = 90.0,
    personas_out: Path | None = None,
    end_ts: float | None = None,
    on_progress: ProgressCallback | None = None,
    shift: str | None = None,
) -> SimulationResult:
    """Plan ``days`` of traffic for ``users`` users up to ``end_ts`` (default now), produce it.

    ``rate`` is events per second (``<= 0``: as fast as possible; None: spread the whole plan
    over 90% of ``duration``); producing stops after ``duration`` seconds of wall time or when
    every planned event is sent.
    """
    started = time.perf_counter()
    end = time.time() if end_ts is None else end_ts
    events, plans = await asyncio.to_thread(plan_events, users, days, seed, end)
    if shift:
        events = shift_personas(events, plans, shift, seed, end, days)
    if personas_out is not None:
        await asyncio.to_thread(write_personas, personas_out, plans.values())
    planning_s = time.perf_counter() - started
    if rate is None:
        rate = len(events) / max(0.9 * duration, 1e-9)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        await producer.start()
        sent, elapsed, last_ts = await _produce_paced(
            producer, topics.by_kind, events, rate, duration, on_progress)
    finally:
        await producer.stop()  # flushes what was handed over, also when cancelled
    return SimulationResult(planned=len(events), sent=sent, elapsed_s=elapsed,
                            last_event_ts=last_ts, users=len(plans), planning_s=planning_s)


async def _produce_paced(
    producer: AIOKafkaProducer,
    topic_by_kind: Mapping[str, str],
    events: Sequence[dict[str, Any]],
    rate: float,
    duration: float,
    on_progress: ProgressCallback | None,
) -> tuple[int, float, float | None]:
    """Send ``events`` in order, ``rate`` per second; return (sent, seconds, last event ts)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration
    sent, last_ts = 0, None
    while sent < len(events) and loop.time() < deadline:
        tick_at = loop.time()
        due = len(events) if rate <= 0 else int((tick_at - started) * rate) + 1
        batch = events[sent:min(due, len(events), sent + MAX_BATCH)]
        if batch:
            await _send_batch(producer, topic_by_kind, batch)
            sent += len(batch)
            last_ts = batch[-1]["ts"]
            if on_progress is not None:
                on_progress(sent, len(events))
        if rate > 0 and sent < len(events):
            await asyncio.sleep(max(0.0, tick_at + TICK_S - loop.time()))
    return sent, loop.time() - started, last_ts


async def _send_batch(
    producer: AIOKafkaProducer, topic_by_kind: Mapping[str, str],
    batch: Sequence[dict[str, Any]],
) -> None:
    """Hand a batch to the producer, then wait until the broker has acknowledged all of it.

    ``asyncio.wait`` rather than ``gather``: cancelling us must not cancel the delivery futures,
    the producer still delivers (and ``stop`` flushes) what it was handed.
    """
    futures = [
        await producer.send(topic_by_kind[event["kind"]], orjson.dumps(event),
                            key=entity_id(event).encode(), timestamp_ms=event_time_ms(event))
        for event in batch
    ]
    done, _ = await asyncio.wait(futures)
    for future in done:
        future.result()  # raise the first delivery error, if any
