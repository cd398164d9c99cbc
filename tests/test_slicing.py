"""A batch processed a slice at a time gives the same outcome as in one go, and the worker's own
garbage collection frees cycles it froze: pure logic, no I/O."""

from __future__ import annotations

import gc
import time
import weakref

import orjson

from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.collector import Collector
from streams.runtime.messages import BatchOutcome, Message

SETTINGS = load_settings()


def messages(users: int, per_user: int, now: float) -> list[Message]:
    out = []
    for n in range(users * per_user):
        user, ts = f"u{n % users}", now - 3600 + n
        body = {"event_id": f"o{n}", "ts": ts, "user_id": user, "order_id": f"o{n}",
                "total": 20.0 + n % 7}
        out.append(Message("shop.orders", 0, n, user.encode(), orjson.dumps(body), ts))
    return out


def run(batch: list[Message], slice_s: float) -> tuple[BatchOutcome, int]:
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 300.0)
    stored: dict[str, UserRecord] = {}
    steps = processor.steps(batch, stored.get, slice_s=slice_s)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, pauses
        pauses += 1


def test_a_sliced_batch_pauses_between_users_and_comes_to_the_same_outcome() -> None:
    batch = messages(users=300, per_user=3, now=time.time())
    whole, none = run(batch, slice_s=float("inf"))
    sliced, pauses = run(batch, slice_s=0.0)
    assert none == 0
    # Decoding pauses after each chunk of messages, processing between every two users.
    assert pauses >= 300
    assert sorted(sliced.records) == sorted(whole.records) and len(whole.records) == 300

    def changes(outcome: BatchOutcome) -> list[tuple[str, str, str | None, str | None]]:
        return sorted((c.user_id, c.segmentation, c.previous, c.current)
                      for c in outcome.changes)

    assert changes(sliced) == changes(whole) and whole.changes
    for user, record in whole.records.items():
        assert sliced.records[user].features.counts == record.features.counts


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_collector_freezes_survivors_and_frees_their_cycles_when_it_runs_a_full_one() -> None:
    collector = Collector(young_every_s=0.0)
    collector.start()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        frozen_before = gc.get_freeze_count()
        collector.between_steps()  # young: survivors frozen
        assert gc.get_freeze_count() > frozen_before
        del a, b
        collector.between_steps()
        collector.between_steps()
        assert gone() is not None  # a frozen cycle waits for a full collection
        collector.full()
        assert gone() is None
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
