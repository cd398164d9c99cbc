"""Re-placing users after a new behaviour model version (streams/runtime/model_sweep.py)."""

from __future__ import annotations

import time

from features.events import ClickEvent
from segmenter.behavior import DIMENSIONS, BehaviorModel
from segmenter.clv import BuyTillYouDie, ValueModel
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.records import Placement
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import BatchOutcome
from streams.runtime.model_sweep import ModelSweep

SETTINGS = load_settings(environ={})


def _version(number: int) -> BehaviorModel:
    return BehaviorModel(number, ["b1", "b2"], [[0.0] * DIMENSIONS, [float(number)] * DIMENSIONS],
                         [1.0] * DIMENSIONS)


def test_a_version_mid_sweep_re_places_the_waiting_users_first_and_the_swept_ones_after() -> None:
    engine = SegmentEngine(SETTINGS)
    sweep = ModelSweep(engine, BatchProcessor(engine, SETTINGS.kafka.topics, 10**12))
    users = [f"u{n}".encode() for n in range(10)]
    assert sweep.apply(_version(1), lambda: iter(users))
    taken = sweep.step(BatchOutcome(), lambda user: None, 4)  # u0..u3 re-placed under v1
    assert taken == 4
    assert sweep.apply(_version(2), lambda: iter(users))
    assert list(sweep.pending) == users[4:] + users[:4]
    assert sweep.apply(_version(3), lambda: iter(users))  # nothing swept meanwhile
    assert list(sweep.pending) == users[4:] + users[:4]
    sweep.step(BatchOutcome(), lambda user: None, 10)
    assert sweep.apply(_version(4), lambda: iter(users))  # a sweep that had ended: from the top
    assert list(sweep.pending) == users
    sweep.step(BatchOutcome(), lambda user: None, 3)  # u3 is next, and then leaves the shop
    assert sweep.apply(_version(5), lambda: iter(users[:3] + users[4:]))
    assert list(sweep.pending) == users[:3] + users[4:]


def _centres(number: int, b1: float, b2: float, value: ValueModel | None = None,
             ) -> BehaviorModel:
    return BehaviorModel(number, ["b1", "b2"], [[b1] * DIMENSIONS, [b2] * DIMENSIONS],
                         [1.0] * DIMENSIONS, value=value)


def test_a_version_that_leaves_users_where_they_are_stores_nothing_and_one_that_moves_them_does(
) -> None:
    engine = SegmentEngine(SETTINGS)
    store: dict[str, bytes] = {}
    sweep = ModelSweep(engine, BatchProcessor(engine, SETTINGS.kafka.topics, 10**12),
                       lambda user: Placement.of(store[user]))
    now = time.time()
    sweep.processor.watermark = now
    engine.use_model(_centres(1, 0.0, 1e6))  # everyone is nearest b1
    for n in range(5):
        record = engine.new_record()
        engine.learn(f"u{n}", record, [ClickEvent(event_id=f"c{n}", ts=now - 60, user_id=f"u{n}",
                                                   page="/")], now)
        assert record.segments["behavior"] == "b1"
        store[f"u{n}"] = record.to_bytes()
    users = [user.encode() for user in store]

    loaded: list[str] = []

    def load(user: str) -> UserRecord:
        loaded.append(user)
        return UserRecord.from_bytes(store[user], engine.params)

    def swept(model: BehaviorModel) -> BatchOutcome:
        outcome = BatchOutcome()
        loaded.clear()
        assert sweep.apply(model, lambda: iter(users))
        sweep.step(outcome, load, 10)
        store.update({user: record.to_bytes() for user, record in outcome.records.items()})
        return outcome

    # b1 moved, but every user's vector is still nearest it: nothing evaluated, nothing stored,
    # no record even parsed.
    quiet = swept(_centres(2, 1.0, 1e6))
    assert quiet.changes == [] and quiet.records == {} and loaded == []
    # b1 moved away past b2: every user moves, each change stored with the version placing it.
    moved = swept(_centres(3, 2e6, 1e6))
    assert sorted(c.user_id for c in moved.changes) == sorted(store) == sorted(loaded)
    assert {(c.previous, c.current, c.model_version) for c in moved.changes} == {("b1", "b2", 3)}
    assert {r.behavior_version for r in moved.records.values()} == {3}
    # A new value model: every user is evaluated again (their value tier may change), even
    # though their behaviour segment stays.
    params = BuyTillYouDie(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, gamma=15.44)
    value = ValueModel(params, 52, [("top", 100.0), ("low", 0.0)], 500)
    valued = swept(_centres(4, 2e6, 1e6, value))
    assert sorted(valued.records) == sorted(store)
    assert {r.behavior_version for r in valued.records.values()} == {4}
    # The same value model in the next version: the centres alone decide again.
    assert swept(_centres(5, 2e6, 1e6 + 1, value)).records == {}
    # ... also for a worker that restarted meanwhile (it knows the value model by its
    # fingerprint on each record, not by the versions it has seen).
    engine = sweep.engine = SegmentEngine(SETTINGS)
    engine.use_model(_centres(5, 2e6, 1e6 + 1, value))
    assert swept(_centres(6, 2e6, 1e6 + 2, value)).records == {} and loaded == []
