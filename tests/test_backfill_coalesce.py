"""Coalescing while catching up, in the batch step alone (no I/O): a backlog's events are folded
in and stored unsettled, and each user is evaluated once, to the same state as evaluating every
event; anything that touches a waiting user settles them first; a restored (recovered) record
still unsettled is settled by its new owner, and one gone elsewhere is passed over."""

from __future__ import annotations

import itertools
import time

import orjson

from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import Message

SETTINGS = load_settings()
DAY = 86_400.0


def orders(user: str, count: int, first_ts: float, every_days: float) -> list[Message]:
    return [Message("shop.orders", 0, n, user.encode(), orjson.dumps({
        "event_id": f"{user}-{n}", "ts": first_ts + n * every_days * DAY, "user_id": user,
        "order_id": f"{user}-{n}", "total": 80.0}), first_ts + n * every_days * DAY)
        for n in range(count)]


def run(messages: list[Message], coalesce: bool) -> tuple[dict[str, UserRecord], list, bool]:
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    store: dict[str, UserRecord] = {}
    changes, deferred = [], False
    for start in range(0, len(messages), 4):
        outcome = processor.process(messages[start:start + 4], store.get, lambda u: True,
                                    3600.0 if coalesce else None)
        deferred |= outcome.deferred
        store.update(outcome.records)
        changes += outcome.changes
    while processor.unsettled:
        outcome = processor.settle(2, store.get)
        store.update(outcome.records)
        changes += outcome.changes
    # Then the time-driven reviews, until nothing is due at the stream's event time.
    while (outcome := processor.review(store.get, 1000)).records:
        store.update(outcome.records)
        changes += outcome.changes
    return store, changes, deferred


def test_coalescing_reaches_the_state_that_evaluating_every_event_reaches() -> None:
    start = time.time() - 400 * DAY
    backlog = sorted(orders("loyal", 12, start, 20) + orders("once", 1, start + 5 * DAY, 1)
                     + orders("twice", 2, start + 300 * DAY, 30), key=lambda m: m.timestamp)
    each, each_changes, each_deferred = run(backlog, coalesce=False)
    coalesced, changes, deferred = run(backlog, coalesce=True)
    assert deferred and not each_deferred
    assert {u: r.segments for u, r in coalesced.items()} == {u: r.segments
                                                             for u, r in each.items()}
    # The loyal customer moved through several segments on the way; coalesced, each of their
    # segmentations changed once, from nothing to where the history left them.
    loyal = [c for c in each_changes if c.user_id == "loyal"]
    assert len(loyal) > len({c.segmentation for c in loyal})
    for user, record in coalesced.items():
        # Settled once: one change per segmentation, from nothing, caused by the latest
        # event of the user's backlog; later ones only from time or the population moving.
        latest = max((m for m in backlog if m.key == user.encode()), key=lambda m: m.timestamp)
        cause = orjson.loads(latest.value)["event_id"]
        settled = [c for c in changes if c.user_id == user and c.cause == cause]
        assert len(settled) == len({c.segmentation for c in settled}) > 0
        assert all(c.previous is None and c.ts == latest.timestamp for c in settled)
        later = [c for c in changes if c.user_id == user and c.cause != cause]
        assert all(c.cause.startswith(("time@", "population@")) for c in later)
        for segmentation, segment in record.segments.items():
            chain = [c for c in changes if c.user_id == user and c.segmentation == segmentation]
            assert all(a.current == b.previous for a, b in itertools.pairwise(chain))
            assert chain[-1].current == segment


def test_live_input_settles_a_waiting_user_and_a_new_owner_settles_the_rest() -> None:
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    old = time.time() - 100 * DAY
    outcome = processor.process(orders("a", 2, old, 1) + orders("b", 1, old, 1),
                                lambda u: None, lambda u: True, 3600.0)
    # Folded in and stored, not evaluated: no segments, no changes, marked unsettled with the
    # latest event folded in (the cause of what settling will change).
    assert outcome.deferred and set(outcome.records) == {"a", "b"} and not outcome.changes
    assert all(not r.segments for r in outcome.records.values())
    assert outcome.records["a"].unsettled == [old + DAY, "a-1"]
    assert set(processor.unsettled) == {"a", "b"}
    stored = {user: record.to_bytes() for user, record in outcome.records.items()}

    def load(user: str) -> UserRecord | None:
        return processor.engine.load_record(stored[user]) if user in stored else None
    # Live events for "a": the stream has caught up, "a" is evaluated with everything folded.
    now = time.time()
    live = Message("shop.orders", 0, 9, b"a", orjson.dumps({
        "event_id": "a-live", "ts": now, "user_id": "a", "order_id": "a-live", "total": 5.0}),
        now)
    outcome = processor.process([live], load, lambda u: True, 3600.0)
    assert not outcome.deferred and set(outcome.records) == {"a"}
    assert outcome.records["a"].features.counts["orders"] == 3
    assert outcome.records["a"].unsettled is None and outcome.records["a"].segments
    stored["a"] = outcome.records["a"].to_bytes()
    # "a" was evaluated meanwhile: passed over; "b" moved to another worker: passed over.
    assert not processor.settle(10, lambda user: None if user == "b" else load(user)).records
    assert not processor.unsettled
    # The new owner of "b" restores it from the changelog and settles it.
    other = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    restored = [("b", load("b"))]
    other.adopt(restored)
    assert not other.restore(restored, set()).records and set(other.unsettled) == {"b"}
    settled = other.settle(10, load)
    assert set(settled.records) == {"b"} and settled.records["b"].segments
    assert {c.cause for c in settled.changes} == {"b-0"}


def test_no_reviews_or_rescoring_while_catching_up_and_all_of_them_after() -> None:
    # "early" bought 300 days ago, "late" 100 days ago: by late's order, time has moved early
    # on (a time-driven review is due) and the population has changed (a re-score is due).
    early, late = time.time() - 300 * DAY, time.time() - 100 * DAY
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    store: dict[str, UserRecord] = {}
    for backlog in (orders("early", 1, early, 1), orders("late", 3, late, 1)):
        outcome = processor.process(backlog, store.get, lambda u: True, None)
        store.update(outcome.records)
    # Input still waiting on the broker: nothing reviewed yet.
    waiting = processor.review(store.get, 1000, lambda topic, partition: False,
                               coalesce_after_s=3600.0)
    assert not waiting.records and not waiting.changes
    # Every partition read: reviewed, though the stream is still far behind the wall clock
    # (old history; a quiet shop).
    reviewed = processor.review(store.get, 1000, lambda topic, partition: True,
                                coalesce_after_s=3600.0)
    assert "early" in reviewed.records
    assert any(c.user_id == "early" and c.cause.startswith("time@") for c in reviewed.changes)
