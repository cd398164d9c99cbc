"""``segmenter simulate``: planted-persona shop traffic, produced to the input topics at a rate.

The events come from :func:`streams.tools.traffic.personas.plan_events` (days of shop history up to
``end_ts``) and are produced in event-time order, keyed by entity id, to the topic of their
kind, ``rate`` events per second of wall time (:mod:`streams.tools.traffic.pacing`), until all are
sent or ``duration`` seconds have passed. Cancelling :func:`simulate` still flushes what was
handed to the producer and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from segmenter.settings import Topics
from streams.tools.traffic.pacing import ProgressCallback, produce_paced
from streams.tools.traffic.personas import (
    DAY,
    PERSONAS,
    UserPlan,
    entity_id,
    plan_events,
    plan_user,
)


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
        by_kind = topics.by_kind
        paced = await produce_paced(producer, events, lambda event: by_kind[event["kind"]], rate,
                                    duration=duration, on_progress=on_progress)
    finally:
        await producer.stop()  # flushes what was handed over, also when cancelled
    return SimulationResult(planned=len(events), sent=paced.sent, elapsed_s=paced.elapsed_s,
                            last_event_ts=paced.last_ts, users=len(plans), planning_s=planning_s)

