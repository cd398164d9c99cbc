"""Re-placing users after a new behaviour model version (streams/runtime/model_sweep.py)."""

from __future__ import annotations

from segmenter.behavior import DIMENSIONS, BehaviorModel
from segmenter.engine import SegmentEngine
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
