"""The benchmark's data of real shops, and its in-process part: worker state and cost per event
as the number of users grows.

``order_history``: a shop's order export, skewed as real shops are (over half of the
customers buy once, a long tail buys often; log-normal totals).

``state_rows``: the worker's own code path (:class:`~streams.runtime.batch.BatchProcessor`, the
records as the worker stores them, its garbage collection) over N users, without Kafka or
Redis, so that a million users fit in a benchmark: stored bytes per user, the process's memory
growth per user, and the cost per event at each N, each N in a fresh process.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import subprocess
import sys
import time
from typing import Any

import orjson

from segmenter.engine import SegmentEngine
from segmenter.settings import Settings, load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.collector import COLLECTOR
from streams.runtime.messages import Message
from streams.runtime.state.change_outbox import ChangeOutbox, keep_delivered

DAY = 86_400.0


def order_history(orders: int, customers: int, days: float, end_ts: float,
                  seed: int = 7) -> list[dict[str, Any]]:
    """``orders`` orders of ``customers`` customers over ``days`` up to ``end_ts``, in order."""
    rng = random.Random(seed)
    counts = [1] * customers
    for _ in range(max(0, orders - customers)):  # the rest by preferential attachment
        counts[_pick_repeat(rng, customers)] += 1
    history = []
    for customer, count in enumerate(counts):
        first = end_ts - rng.random() * days * DAY
        for n in range(count):
            ts = min(end_ts, first + n * rng.expovariate(1 / (30 * DAY)))
            history.append({"event_id": f"o{customer}-{n}", "ts": round(ts, 3),
                            "user_id": f"c{customer}", "order_id": f"{customer}-{n}",
                            "total": round(rng.lognormvariate(4.0, 0.8), 2)})
    history.sort(key=lambda order: order["ts"])
    return history


def _pick_repeat(rng: random.Random, customers: int) -> int:
    # A Zipf-like tail: low indexes buy again far more often than the rest.
    return min(customers - 1, int(customers * rng.random() ** 3))


def state_rows(sizes: tuple[int, ...], config: str | None = None) -> list[tuple[str, str]]:
    """The figures at each number of users; ``config``: the bench's extra YAML, if any."""
    figures = [_in_child(users, config) for users in sizes]
    base = figures[0][2]
    parts = [f"{users:,} users: {stored:,.0f} B stored, {rss:,.0f} B RSS per user, "
             f"{1e6 * cost:.1f} us/event ({cost / base:.2f}x)"
             for users, (stored, rss, cost) in zip(sizes, figures, strict=True)]
    return [("worker state", "; ".join(parts) + " (in process, the worker's code path)")]


def _in_child(users: int, config: str | None) -> tuple[float, float, float]:
    """:func:`_state_at` in a process of its own: one that ran the bench's other parts reuses
    the memory they freed, and its RSS grew by 0 to 434 B per user for a million users (1,191
    measured alone)."""
    env = {**os.environ, **({"SEGMENTER_CONFIG": config} if config else {})}
    done = subprocess.run([sys.executable, "-m", "streams.tools.bench.state", str(users)],
                          env=env, capture_output=True, timeout=3600, check=False)
    if done.returncode:
        raise RuntimeError(f"the state part failed at {users:,} users: {done.stderr[-2000:]!r}")
    stored, rss, cost = json.loads(done.stdout.splitlines()[-1])
    return stored, rss, cost


def _state_at(settings: Settings, users: int) -> tuple[float, float, float]:
    """(stored record bytes per user, RSS growth per user, seconds per event). RSS is read
    from the end of the first batch on, so that what any first batch allocates once (lazy
    imports, caches, the collector's start) is not counted per user."""
    gc.collect()
    engine = SegmentEngine(settings)
    processor = BatchProcessor(engine, settings.kafka.topics, 3600.0)
    store: dict[bytes, bytes] = {}

    def load(user_id: str) -> Any:
        value = store.get(user_id.encode())
        return None if value is None else engine.load_record(value)

    # Records are stored with their change events (the outbox), as the publisher stores them;
    # each batch's predecessors count as delivered, and are kept without them from then on.
    outbox = ChangeOutbox(lambda: None, "", lambda: "", lambda: {})
    events, seconds, rss_from, counted_from = 0, 0.0, 0, 0
    carrying: list[tuple[bytes, int]] = []  # the last batch's records stored with an outbox
    # The garbage collector as the worker runs it (:mod:`streams.runtime.collector`): with
    # CPython's own, full collections walk every stored record again and again, and the cost
    # per event at a million users was 115 us instead of 63 (measured), a cost the worker
    # does not pay.
    COLLECTOR.start()
    try:
        for batch in _batches(settings, users):
            started = time.perf_counter()
            outcome = processor.process(batch, load)
            carrying = _write(engine, outcome, outbox, store, carrying)
            COLLECTOR.between_steps()
            seconds += time.perf_counter() - started
            events += len(batch)
            if not rss_from:
                rss_from, counted_from = _rss(), len(store)
    finally:
        COLLECTOR.stop()
    outbox.delivered[0] = outbox.seq
    keep_delivered(store, carrying, outbox.delivered)
    gc.collect()
    stored = sum(len(key) + len(value) for key, value in store.items()) / users
    rss = (_rss() - rss_from) / max(1, len(store) - counted_from)
    store.clear()
    return stored, rss, seconds / events


def _write(engine: SegmentEngine, outcome: Any, outbox: ChangeOutbox,
           store: dict[bytes, bytes], carrying: list[tuple[bytes, int]],
           ) -> list[tuple[bytes, int]]:
    """Store a batch's records as the publisher does (its previous write counts as delivered);
    return the keys stored with an outbox."""
    seq = outbox.next_seq()
    outbox.delivered[0] = seq - 1
    keep_delivered(store, carrying, outbox.delivered)
    changes: dict[str, list[bytes]] = {}
    for change in outcome.changes:
        changes.setdefault(change.user_id, []).append(change.to_json(time.time()))
    written = []
    for user_id, record in outcome.records.items():
        outbox.fill(record, 0, changes.get(user_id, []), seq)
        key = user_id.encode()
        store[key] = record.to_bytes()
        if record.outbox:
            written.append((key, 0))
    # The behaviour statistics go to the trainer with each batch, as the publisher sends
    # them: left to gather, they held every user's vector (about 550 B a user).
    engine.take_statistics()
    return written


def _batches(settings: Settings, users: int, size: int = 1000) -> Any:
    """Each user: a visit of two clicks; two in five also order (one in four of those twice)."""
    rng = random.Random(users)
    topics = settings.kafka.topics
    end = time.time() - 3600
    batch: list[Message] = []
    for n in range(users):
        user, ts = f"u{n}", end - 30 * DAY + n * 30 * DAY / users
        events = [(topics.clicks, {"event_id": f"{user}-c{i}", "ts": ts + i, "user_id": user,
                                   "page": f"/p/{i}", "category": "shoes"}) for i in range(2)]
        for i in range(int(rng.random() < 0.4) * (1 + int(rng.random() < 0.25))):
            events.append((topics.orders, {"event_id": f"{user}-o{i}", "ts": ts + 10 + i,
                                           "user_id": user, "order_id": f"{user}-{i}",
                                           "total": round(math.exp(rng.gauss(4, 0.8)), 2)}))
        for topic, event in events:
            batch.append(Message(topic, 0, len(batch), user.encode(), orjson.dumps(event),
                                 event["ts"]))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


if __name__ == "__main__":  # one size, in a fresh process (see _in_child)
    print(json.dumps(_state_at(load_settings(), int(sys.argv[1]))))
