"""A regrouping walked a step per version (segmenter/regrouping.py): pure logic, no I/O."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from segmenter.behavior import DIMENSIONS, BehaviorModel
from segmenter.clusterers import moved_share
from segmenter.regrouping import Regrouping

SPACE = (np.zeros(DIMENSIONS), np.ones(DIMENSIONS))


def _blobs(*centres: float, users: int = 200, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, 1.0, (users, DIMENSIONS)) for c in centres])


def _walk(path: Regrouping, sample: np.ndarray, budget: float) -> list[list[str]]:
    """Labels of the sample at each version along the path, the start included."""
    labels = [path.model().predict_many(sample)]
    while not path.done:
        moved = path.advance(sample, budget)
        assert moved <= budget
        labels.append(path.model().predict_many(sample))
        assert len(labels) < 5000, "the path does not end"
    return labels


def test_a_split_and_a_vanished_segment_end_as_the_fresh_fit_a_budget_a_version() -> None:
    # Old: b1 holds the kinds at 0 and 6, b2 the kind at -6, b3 a few at 12. Fresh: b1 at 0,
    # a new b4 at 6, b2 at -6; b3's users go to b4.
    sample = np.vstack([_blobs(0.0, 6.0, -6.0), _blobs(12.0, users=20, seed=2)])
    old = np.vstack([np.full(DIMENSIONS, 3.0), np.full(DIMENSIONS, -6.0),
                     np.full(DIMENSIONS, 12.0)])
    fresh = np.vstack([np.zeros(DIMENSIONS), np.full(DIMENSIONS, -6.0),
                       np.full(DIMENSIONS, 6.0)])
    path = Regrouping.between(["b1", "b2", "b3"], old, ["b1", "b2", "b4"], fresh, SPACE, sample)
    labels = _walk(path, sample, budget=0.01)
    final = BehaviorModel(0, ["b1", "b2", "b4"], fresh, SPACE[1]).predict_many(sample)
    assert labels[-1] == final
    assert path.model().ids == ["b1", "b2", "b4"]
    assert len(labels) > 0.5 * moved_share(labels[0], final) / 0.01  # many small steps
    # Each user changes segment at most twice on the way; most go straight to where the
    # fresh fit puts them.
    changes = Counter()
    for before, after in itertools.pairwise(labels):
        for user, (a, b) in enumerate(zip(before, after, strict=True)):
            changes[user] += a != b
    assert max(changes.values()) <= 2
    moved = [user for user in range(len(sample)) if labels[0][user] != final[user]]
    assert sum(changes[user] == 1 for user in moved) >= 0.9 * len(moved)
    # No one who ends where they started moved meanwhile.
    stayed = [user for user in range(len(sample)) if labels[0][user] == final[user]]
    assert sum(changes[user] for user in stayed) <= 0.02 * len(stayed)


def test_a_path_goes_on_where_it_was_after_a_restart() -> None:
    sample = _blobs(0.0, 6.0)
    path = Regrouping.between(["b1"], np.full((1, DIMENSIONS), 3.0), ["b1", "b2"],
                              np.vstack([np.zeros(DIMENSIONS), np.full(DIMENSIONS, 6.0)]),
                              SPACE, sample)
    for _ in range(20):
        path.advance(sample, 0.01)
    assert 0 < path.s < 1
    again = Regrouping.from_json(path.to_json())
    assert again.model().predict_many(sample) == path.model().predict_many(sample)
    assert again.advance(sample, 0.01) == path.advance(sample, 0.01)
    assert again.s == path.s


def test_even_a_step_that_moves_more_than_the_budget_is_taken() -> None:
    """Many users alike (one-time buyers with the same vector) cross together: the path
    must still progress rather than stop for good."""
    sample = np.vstack([np.zeros((50, DIMENSIONS)), np.full((50, DIMENSIONS), 6.0)])
    path = Regrouping.between(["b1"], np.full((1, DIMENSIONS), 3.0), ["b1", "b2"],
                              np.vstack([np.zeros(DIMENSIONS), np.full(DIMENSIONS, 6.0)]),
                              SPACE, sample)
    steps = 0
    while not path.done and steps < 100:
        path.advance(sample, 0.01)
        steps += 1
    assert path.done
    assert path.model().predict_many(sample) == ["b1"] * 50 + ["b2"] * 50


def test_handicaps_place_alike_one_at_a_time_and_in_a_batch_and_survive_json() -> None:
    sample = _blobs(0.0, 6.0, users=50)
    model = BehaviorModel(3, ["b1", "b2"], np.vstack([np.zeros(DIMENSIONS),
                                                      np.full(DIMENSIONS, 6.0)]),
                          SPACE[1], handicaps=[0.0, 36.0 * DIMENSIONS])
    batch = model.predict_many(sample)
    assert batch == [model.predict_one(list(vector)) for vector in sample]
    plain = BehaviorModel(3, ["b1", "b2"], model.centres, SPACE[1]).predict_many(sample)
    assert batch.count("b2") < plain.count("b2")  # the handicap keeps some users out
    again = BehaviorModel.from_json(model.to_json())
    assert again.predict_many(sample) == batch and again == model
    assert not again.same_centres(BehaviorModel(3, ["b1", "b2"], model.centres, SPACE[1]))


def test_a_path_judged_on_no_sample_yet_is_still_a_path() -> None:
    """A trainer that took the model over merges a segment before its sample refilled: the
    path is made (it waits for the sample before it steps) and ends where it should."""
    old = np.vstack([np.zeros(DIMENSIONS), np.full(DIMENSIONS, 5.0)])
    path = Regrouping.between(["a", "b"], old, ["a"], old[:1], SPACE,
                              np.zeros((0, DIMENSIONS)))
    assert path.model().ids == ["a", "b"]
    sample = _blobs(0.0, 5.0, users=50)
    _walk(path, sample, budget=0.05)
    assert path.model().ids == ["a"]
