"""One battery of River's estimator checks over the behaviour clusterers, as river/checks runs
over every River estimator, with a dataset of behaviour-like blobs for the checks that need
data (River has none for clusterers), then what the project needs of them: stable labels.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from river import checks, compose, preprocessing
from river.checks import common
from sklearn.metrics import adjusted_rand_score

from segmenter.clusterers import (
    CANDIDATES,
    SeededKMeans,
    kmeans_plus_plus,
    match_ids,
    moved_share,
)


def blobs(n: int = 300, kinds: int = 3, seed: int = 0, shift: float = 0.0
          ) -> list[tuple[dict[str, float], int]]:
    """(features, kind): ``kinds`` groups of shoppers apart in spend and visits."""
    rng = random.Random(seed)
    points = []
    for i in range(n):
        kind = i % kinds
        points.append(({"spend": 6.0 * kind + shift + rng.gauss(0, 1),
                        "visits": 3.0 * (kind % 2) + rng.gauss(0, 1),
                        "baskets": rng.gauss(0, 1)}, kind))
    return points


#: River's checks that need data: it runs them over its own datasets, none of which is for
#: clusterers, so here they get behaviour blobs.
DATASET_CHECKS = [
    common.check_learn_one, common.check_pickling, common.check_shuffle_features_no_impact,
    common.check_emerging_features, common.check_disappearing_features,
    common.check_radically_disappearing_features, common.check_predict_one_pure,
    common.check_predict_one_before_any_learn, common.check_no_state_aliasing_with_input,
    common.check_clone_is_independent, common.check_seeding_is_idempotent,
]


def battery(model: Any) -> Iterator[tuple[str, Callable[[], None]]]:
    """River's checks for ``model``: its general ones, then those that take a dataset."""
    for check in checks.yield_checks(model):
        yield check.__name__, lambda check=check: check(model.clone())
    for check in DATASET_CHECKS:
        yield check.__name__, lambda check=check: check(
            model.clone(), [(x, None) for x, _ in blobs(60)])


@pytest.mark.parametrize("params", list(SeededKMeans._unit_test_params()))
def test_seeded_kmeans_passes_river_s_estimator_checks(params: dict[str, Any]) -> None:
    model = SeededKMeans(**params)
    names = []
    for name, run in battery(model):
        run()
        names.append(name)
    assert {"check_clone_is_idempotent", "check_pickling", "check_emerging_features",
            "check_predict_one_before_any_learn", "check_shuffle_features_no_impact"} <= set(names)


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_every_configurable_clusterer_learns_and_predicts_behind_online_scaling(
        name: str) -> None:
    model = compose.Pipeline(preprocessing.StandardScaler(), CANDIDATES[name](3, seed=1))
    data = blobs(600)
    for x, _ in data:
        model.learn_one(x)
    labels = [model.predict_one(x) for x, _ in data]
    assert all(isinstance(label, int | np.integer) for label in labels)
    if name == "seeded_kmeans":  # the others' figures: segmenter quality --compare
        # scikit-learn's KMeans offline on the same standardised blobs: 0.95 (they overlap a
        # little once the noise dimension weighs as much as the others)
        assert adjusted_rand_score([kind for _, kind in data], labels) >= 0.9


def test_labels_stay_with_their_groups_through_a_drift() -> None:
    model = SeededKMeans(n_clusters=3, warmup=50, seed=3)
    before = blobs(900, seed=1)
    for x, _ in before:
        model.learn_one(x)
    probe = blobs(90, seed=9)
    labels = [model.predict_one(x) for x, _ in probe]
    assert adjusted_rand_score([k for _, k in probe], labels) == 1.0
    # Every group drifts a little: the same groups, so the same labels.
    for x, _ in blobs(900, seed=2, shift=0.5):
        model.learn_one(x)
    assert [model.predict_one(x) for x, _ in probe] == labels


def test_the_shared_rules() -> None:
    points = np.asarray([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    _, labels = kmeans_plus_plus(points, 2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert match_ids(["a", "a", "b", "b"], [1, 1, 0, 0]) == {1: "a", 0: "b"}
    # "b" split: the half that holds half its points continues it; a new group does not.
    assert match_ids(["a", "a", "b", "b", "b", "b"], [0, 0, 1, 1, 2, 3]) == {0: "a", 1: "b"}
    assert match_ids(["a", "a", "a"], [0, 1, 2]) == {}  # "a" fell apart: no group continues it
    assert moved_share([1, 1, 2, 2], [7, 7, 8, 8], match=True) == 0.0
    assert moved_share([1, 1, 2, 2], [1, 2, 2, 2]) == 0.25


def test_a_river_clusterer_chosen_in_config_drives_the_published_versions() -> None:
    from segmenter.behavior import DIMENSIONS, StatsDelta
    from segmenter.behavior_trainer import BehaviorTrainer
    from segmenter.settings import load_settings

    behavior = load_settings(environ={}).segmentations.behavior.model_copy(
        update={"algorithm": "clustream", "clusters": 2, "warmup_users": 50})
    trainer = BehaviorTrainer(behavior)
    rng = np.random.default_rng(0)

    def sample(start: int, shift: float) -> StatsDelta:
        return StatsDelta(sample={f"u{n}": list(rng.normal(6.0 * (n % 2) + shift, 0.3,
                                                           DIMENSIONS))
                                  for n in range(start, start + 400)})

    for offset in range(3):  # CluStream forms its macro clusters after time_gap points
        trainer.learn(sample(400 * offset, 0.0), offset=offset)
    first = trainer.next_version(now=0.0)
    assert first is not None and len(first.ids) == 2
    near_zero = first.predict_one([0.0] * DIMENSIONS)
    assert near_zero != first.predict_one([6.0] * DIMENSIONS)
    # The groups move a little: the centres follow, and each keeps its id.
    for offset in range(3, 9):
        trainer.learn(sample(400 * offset, 0.5), offset=offset)
    second = trainer.next_version(now=1.0)
    assert second is not None and second.ids == first.ids
    assert second.predict_one([0.5] * DIMENSIONS) == near_zero
    # They are reached a step per version, as a refit is: none moves more than max_churn of
    # the sampled users, and the path ends at the clusterer's centres.
    points = trainer.reservoir.points()
    versions = [first, second]
    while trainer.regrouping is not None and len(versions) < 500:
        versions.append(trainer.next_version(now=2.0))
    assert trainer.regrouping is None and all(v is not None for v in versions)
    for before, after in itertools.pairwise(versions[1:]):
        moved = moved_share(before.predict_many(points), after.predict_many(points))
        assert moved <= behavior.max_churn
    assert versions[-1].ids == first.ids and versions[-1].handicaps is None
